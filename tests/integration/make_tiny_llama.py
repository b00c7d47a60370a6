#!/usr/bin/env python3
"""Write a tiny random LLaMA model folder as transformers' save_pretrained
lays it out: config.json (LlamaForCausalLM), model.safetensors (F32, the
LlamaForCausalLM tensor names, untied lm_head), and the sp_bpe fixture
tokenizer (tokenizer.json + tokenizer_config.json).

Standard library only (struct, json, random), so the integration test runs
under any python3: the safetensors layout is 8 bytes of little-endian header
length, the JSON header (dtype, shape, data_offsets per tensor), then the
raw little-endian data. Weights are normal(0, 0.02) like transformers'
initializer_range, norms 1, except lm_head: std 0.5, a pretrained head's
scale (at 0.02 a frozen head caps every logit near 0.02 sqrt(hidden), and
no adapter below it could move the loss much).

With --dtype BF16 the tensors are stored as bfloat16 (each value rounded
to nearest, ties to even); --dtype F32-BF16 stores those same rounded values
as F32, so the two folders hold the same numbers in two widths.

usage: make_tiny_llama.py OUT_DIR [SEED] [--dtype F32|BF16|F32-BF16]"""
import json
import os
import random
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "..", "tokenizer_fixtures", "sp_bpe")

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 420,  # the sp_bpe fixture's vocabulary
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "torch_dtype": "float32",
}


def tensors(cfg, rng):
    """(name, shape, values) in LlamaForCausalLM's naming."""
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = H // cfg["num_attention_heads"]
    kvd = cfg["num_key_value_heads"] * hd

    def normal(rows, cols, std=cfg["initializer_range"]):
        return [rng.gauss(0.0, std) for _ in range(rows * cols)]

    out = [("model.embed_tokens.weight", [V, H], normal(V, H))]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [
            (p + "input_layernorm.weight", [H], [1.0] * H),
            (p + "self_attn.q_proj.weight", [H, H], normal(H, H)),
            (p + "self_attn.k_proj.weight", [kvd, H], normal(kvd, H)),
            (p + "self_attn.v_proj.weight", [kvd, H], normal(kvd, H)),
            (p + "self_attn.o_proj.weight", [H, H], normal(H, H)),
            (p + "post_attention_layernorm.weight", [H], [1.0] * H),
            (p + "mlp.gate_proj.weight", [I, H], normal(I, H)),
            (p + "mlp.up_proj.weight", [I, H], normal(I, H)),
            (p + "mlp.down_proj.weight", [H, I], normal(H, I)),
        ]
    out += [("model.norm.weight", [H], [1.0] * H), ("lm_head.weight", [V, H], normal(V, H, 0.5))]
    return out


def bf16_bits(values):
    """Each float32 value's bfloat16 code, rounded to nearest even."""
    out = []
    for (u,) in struct.iter_unpack("<I", struct.pack(f"<{len(values)}f", *values)):
        out.append(((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF)
    return out


def write_safetensors(path, items, dtype="F32"):
    header, blobs, off = {}, [], 0
    for name, shape, values in items:
        if dtype == "F32":
            data = struct.pack(f"<{len(values)}f", *values)
        elif dtype == "BF16":
            data = struct.pack(f"<{len(values)}H", *bf16_bits(values))
        else:  # F32-BF16: the bf16 values, stored as float32
            data = struct.pack(f"<{len(values)}I", *[b << 16 for b in bf16_bits(values)])
        stored = "BF16" if dtype == "BF16" else "F32"
        header[name] = {"dtype": stored, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    args = sys.argv[1:]
    dtype = "F32"
    if "--dtype" in args:
        i = args.index("--dtype")
        dtype = args[i + 1]
        del args[i:i + 2]
    assert dtype in ("F32", "BF16", "F32-BF16"), dtype
    out = args[0]
    seed = int(args[1]) if len(args) > 1 else 0
    os.makedirs(out, exist_ok=True)
    cfg = dict(CONFIG, torch_dtype="bfloat16" if dtype == "BF16" else "float32")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors(CONFIG, random.Random(seed)),
                      dtype)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER, name), os.path.join(out, name))


if __name__ == "__main__":
    main()
