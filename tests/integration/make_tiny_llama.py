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

usage: make_tiny_llama.py OUT_DIR [SEED]"""
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


def write_safetensors(path, items):
    header, blobs, off = {}, [], 0
    for name, shape, values in items:
        data = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(data)]}
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
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors(CONFIG, random.Random(seed)))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER, name), os.path.join(out, name))


if __name__ == "__main__":
    main()
