#!/usr/bin/env python3
"""Write a tiny random DeBERTa-v3 model folder as transformers'
save_pretrained lays it out: config.json (model_type deberta-v2,
DebertaV2ForSequenceClassification, the v3 switches: relative attention with
log buckets, c2p + p2c with shared keys, LayerNorm on the relative
embeddings, no absolute positions, no token types, eps 1e-7),
model.safetensors (F32, the DebertaV2ForSequenceClassification tensor names
under "deberta.", pooler and classifier outside it) and the deberta_spm
fixture tokenizer (spm.model + tokenizer_config.json, as the hub's
microsoft/deberta-v3-* folders ship it: no tokenizer.json).

The vocabulary is the fixture's 320 pieces plus [MASK], which
DebertaV2Tokenizer appends after them: 321 rows. Weights are normal(0, std)
with std 0.02 (initializer_range) for the embeddings and the head, a larger
0.2 for the encoder's projections so a random two-layer encoder mixes the
tokens into [CLS] strongly enough for a few seconds of training to learn a
task from them; norms 1, biases 0. Standard library only (the safetensors
writer is make_tiny_llama.py's).

usage: make_tiny_deberta.py OUT_DIR [SEED]"""
import json
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_tiny_llama import write_safetensors  # noqa: E402

TOKENIZER = os.path.join(HERE, "..", "tokenizer_fixtures", "deberta_spm")

CONFIG = {
    "architectures": ["DebertaV2ForSequenceClassification"],
    "model_type": "deberta-v2",
    "hidden_act": "gelu",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 321,  # the deberta_spm fixture's 320 pieces + [MASK]
    "max_position_embeddings": 512,
    "relative_attention": True,
    "position_buckets": 16,
    "max_relative_positions": 64,
    "share_att_key": True,
    "pos_att_type": ["p2c", "c2p"],
    "norm_rel_ebd": "layer_norm",
    "position_biased_input": False,
    "type_vocab_size": 0,
    "layer_norm_eps": 1e-07,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "pad_token_id": 0,
    "initializer_range": 0.02,
    "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
    "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "torch_dtype": "float32",
}
ENCODER_STD = 0.2


def tensors(cfg, rng):
    """(name, shape, values) in DebertaV2ForSequenceClassification's naming."""
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    span = cfg["position_buckets"] if cfg["position_buckets"] > 0 else cfg["max_relative_positions"]
    labels = len(cfg["id2label"])

    def normal(n, std):
        return [rng.gauss(0.0, std) for _ in range(n)]

    def linear(name, rows, cols, std=ENCODER_STD):
        return [(name + ".weight", [rows, cols], normal(rows * cols, std)),
                (name + ".bias", [rows], [0.0] * rows)]

    def norm(name):
        return [(name + ".weight", [H], [1.0] * H), (name + ".bias", [H], [0.0] * H)]

    out = [("deberta.embeddings.word_embeddings.weight", [V, H], normal(V * H, 0.02))]
    out += norm("deberta.embeddings.LayerNorm")
    for l in range(cfg["num_hidden_layers"]):
        p = f"deberta.encoder.layer.{l}."
        for proj in ("query_proj", "key_proj", "value_proj"):
            out += linear(p + "attention.self." + proj, H, H)
        out += linear(p + "attention.output.dense", H, H) + norm(p + "attention.output.LayerNorm")
        out += linear(p + "intermediate.dense", I, H)
        out += linear(p + "output.dense", H, I) + norm(p + "output.LayerNorm")
    out += [("deberta.encoder.rel_embeddings.weight", [2 * span, H], normal(2 * span * H, 0.02))]
    out += norm("deberta.encoder.LayerNorm")
    out += linear("pooler.dense", H, H, 0.02) + linear("classifier", labels, H, 0.02)
    return out


def main():
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors(CONFIG, random.Random(seed)))
    for name in ("spm.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER, name), os.path.join(out, name))


if __name__ == "__main__":
    main()
