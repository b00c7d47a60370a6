#!/usr/bin/python3
"""The fold proof for LLaMA adapters, from PyTorch: what PEFT computes from
the engine's CAUSAL_LM PEFT folder.

Inputs (both committed):
- llama_aflora.safetensors (make_llama_golden.py): a tiny random LLaMA
  (GQA, untied lm_head), AFLoRA adapters on all seven modules with random
  s_d and s_b (magnitudes 0.5..1.5, random signs), and a right-padded batch.
- llama_aflora_peft/: the engine's PEFT export of that model, written by
  tests/test_adapter_llama.c when run with AFLO_REGEN_PEFT_FOLD=1.

The script reads only the base weights from the first file and the adapter
from the PEFT folder (adapter_config.json + adapter_model.safetensors),
merges every adapted layer as PEFT's merge_and_unload does, in float64:
    W' = W + (lora_alpha / r) * lora_B @ lora_A
keyed base_model.model.model.layers.N.<module>.lora_{A,B}.weight, and runs
the LLaMA forward of make_llama_golden.py (written from the formulas; no
transformers or peft installed) on the merged weights. It checks itself
against the unfolded AFLoRA forward (W x + s_b * B (s_d * A x)) of the
first file's adapter tensors, and that the adapter changes the logits.

Output: llama_aflora_peft_reference.safetensors with out.logits (merged
model), out.base_logits (base model alone) and out.loss. The C test checks
that the engine's adapted forward gives out.logits within 1e-5 relative and
that its export today is byte for byte the committed folder.

Regenerate (from the repository root, after a build):
    AFLO_REGEN_PEFT_FOLD=1 build/tests/test_adapter_llama
    /usr/bin/python3 tests/golden/make_llama_peft_fold.py
"""

import json
import os
import struct
import sys

import torch

GOLDEN_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, GOLDEN_DIR)
import make_llama_golden as g  # noqa: E402

FIXTURE = os.path.join(GOLDEN_DIR, "llama_aflora.safetensors")
PEFT_DIR = os.path.join(GOLDEN_DIR, "llama_aflora_peft")
REFERENCE = os.path.join(GOLDEN_DIR, "llama_aflora_peft_reference.safetensors")
PEFT_ROOT = "base_model.model."  # PeftModel.base_model (LoraModel) .model
ADAPTER_SUFFIXES = (".lora_A", ".lora_B", ".s_d", ".s_b")


def read_safetensors(path):
    """Every tensor as float64 (F32 only), and the metadata."""
    with open(path, "rb") as fh:
        data = fh.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    out = {}
    for name, h in header.items():
        assert h["dtype"] == "F32", (path, name, h["dtype"])
        a, b = h["data_offsets"]
        vals = struct.unpack("<%df" % ((b - a) // 4), body[a:b])
        out[name] = torch.tensor(vals, dtype=g.DTYPE).reshape(h["shape"])
    return out, meta


def merge_peft(cfg, base, folder):
    """Base weights (engine names) with the PEFT folder's LoRA merged in."""
    with open(os.path.join(folder, "adapter_config.json")) as fh:
        conf = json.load(fh)
    assert conf["peft_type"] == "LORA" and conf["task_type"] == "CAUSAL_LM", conf
    assert conf["bias"] == "none" and conf["modules_to_save"] is None, conf
    for flag in ("use_rslora", "use_dora", "fan_in_fan_out"):
        assert not conf.get(flag), flag
    assert not conf.get("rank_pattern") and not conf.get("alpha_pattern")
    r, scale = conf["r"], conf["lora_alpha"] / conf["r"]
    targets = conf["target_modules"]
    assert isinstance(targets, list), targets
    tensors, _ = read_safetensors(os.path.join(folder, "adapter_model.safetensors"))
    merged, used = dict(base), 0
    for layer in range(cfg["num_hidden_layers"]):
        for mod in g.MODULES:
            key = f"{PEFT_ROOT}model.layers.{layer}.{mod}"
            present = key + ".lora_A.weight" in tensors
            # PEFT's list matching: the module name ends with "." + entry
            assert present == any(key.endswith("." + t) for t in targets), key
            if not present:
                continue
            A, B = tensors[key + ".lora_A.weight"], tensors[key + ".lora_B.weight"]
            out, inp = g.linear_dims(cfg)[mod]
            assert tuple(A.shape) == (r, inp) and tuple(B.shape) == (out, r), key
            name = f"layers.{layer}.{mod}.weight"
            merged[name] = base[name] + scale * (B @ A)
            used += 2
    assert used == len(tensors), "the folder holds tensors besides lora_A/lora_B"
    return merged, conf


def main():
    fx, meta = read_safetensors(FIXTURE)
    cfg = json.loads(meta["config"])
    assert meta["method"] == "aflora"
    weights = {k: v for k, v in fx.items() if not k.startswith(("in.", "out.", "grad."))}
    base = {k: v for k, v in weights.items() if not k.endswith(ADAPTER_SUFFIXES)}
    ids = fx["in.input_ids"].long()
    mask = fx["in.attention_mask"].long()
    labels = fx["in.labels"].long()

    merged, conf = merge_peft(cfg, base, PEFT_DIR)
    logits, loss = g.forward(cfg, merged, ids, mask, labels, "full", 0, 0.0)
    base_logits, _ = g.forward(cfg, base, ids, mask, labels, "full", 0, 0.0)

    # The fold is exact up to the float32 rounding of lora_A and lora_B.
    direct, _ = g.forward(cfg, weights, ids, mask, labels, "aflora", int(meta["rank"]), 0.0)
    scale = direct.abs().max()
    err = ((logits - direct).abs().max() / scale).item()
    assert err < 1e-6, f"merged PEFT logits differ from the AFLoRA forward by {err:.3g}"
    moved = ((base_logits - direct).abs().max() / scale).item()
    assert moved > 1e-2, f"the adapter barely changes the logits ({moved:.3g})"

    g.write_safetensors(REFERENCE, {"out.logits": logits, "out.base_logits": base_logits,
                                    "out.loss": loss.reshape(1)},
                        {"source": "llama_aflora.safetensors base + llama_aflora_peft",
                         "r": conf["r"], "lora_alpha": conf["lora_alpha"]})
    print(f"{REFERENCE}: fold vs direct {err:.3g}, adapter effect {moved:.3g}, "
          f"loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
