#!/usr/bin/python3
"""Independent float64 PyTorch reference for the aflorad C engine.

Writes tests/golden/<case>.safetensors fixtures: a tiny random BERT/RoBERTa
sequence-classification model (base weights, adapter tensors, task head), one
batch of inputs, the logits and loss of a forward pass, and the gradients of
the loss with respect to every tensor that trains in that case.

Why it is shaped so:
- The model is written out in plain torch (no `transformers` here) and follows
  Hugging Face BertModel / BertForSequenceClassification semantics op by op,
  with dropout off: embeddings + LayerNorm, post-LN encoder layers with erf
  GELU, additive attention mask of finfo.min, tanh pooler on the first token,
  classifier, mean cross-entropy (or MSE when num_labels == 1).
- Everything is computed in float64 from weights and inputs that were first
  rounded to float32, so the fixtures hold exactly the numbers the C engine
  reads, and the only difference left to the C side is its own float32
  arithmetic.
- safetensors is written by hand (the package is not installed): 8-byte LE
  header length, JSON header padded with spaces to a multiple of 8, raw LE F32.
- The reference checks itself before writing anything: autograd gradients are
  compared with finite differences (torch.autograd.gradcheck, float64) on tiny
  models of every method, and the hand-written ops are compared with the
  torch.nn.functional versions HF uses.

CI never runs this script; the C tests only read the committed fixtures.
Regenerate with:  /usr/bin/python3 tests/golden/gen_golden.py
"""

import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

DTYPE = torch.float64

# The six adapted linears in every encoder layer (docs/aflora.md section 2).
ADAPTED_LINEARS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)

# Scales for the random weights: well-conditioned, nothing saturates.
MATRIX_STD = 0.2
BIAS_STD = 0.1
LN_WEIGHT_STD = 0.1
# Adapter tensors are all non-zero so that no gradient is trivially zero,
# and sized so the adapter's contribution is comparable to W0 x.
ADAPTER_MATRIX_STD = 0.3
ADAPTER_SCALE_LO = 0.5
ADAPTER_SCALE_HI = 1.5

# The batch every fixture uses: B = 3 sequences of S = 7 tokens.
BATCH = 3
SEQ = 7
LENGTHS = (7, 5, 3)
PAIR_ROW = 1            # this sequence is a sentence pair
PAIR_FIRST_SEGMENT = 3  # tokens 0..2 type 0, tokens 3..len-1 type 1

GOLDEN_DIR = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- config ---

def make_config(model_type="bert", vocab_size=40, hidden_size=16,
                num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=32, max_position_embeddings=24,
                type_vocab_size=2, pad_token_id=0, layer_norm_eps=1e-12):
    """A config.json dict with the keys the C engine reads."""
    return {
        "model_type": model_type,
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": max_position_embeddings,
        "type_vocab_size": type_vocab_size,
        "pad_token_id": pad_token_id,
        "layer_norm_eps": layer_norm_eps,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }


def linear_shapes(cfg):
    """(path, out, in) of every encoder linear, in layer order."""
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    dims = {
        "attention.self.query": (h, h),
        "attention.self.key": (h, h),
        "attention.self.value": (h, h),
        "attention.output.dense": (h, h),
        "intermediate.dense": (f, h),
        "output.dense": (h, f),
    }
    out = []
    for i in range(cfg["num_hidden_layers"]):
        for sub in ADAPTED_LINEARS:
            o, n = dims[sub]
            out.append((f"encoder.layer.{i}.{sub}", o, n))
    return out


# ------------------------------------------------------------ parameters ---

def f32_round(t):
    """Round to float32 and back: the reference uses exactly the stored values."""
    return t.to(torch.float32).to(DTYPE)


def random_scale(gen, n):
    mag = torch.empty(n, dtype=DTYPE).uniform_(ADAPTER_SCALE_LO, ADAPTER_SCALE_HI,
                                               generator=gen)
    sign = torch.randint(0, 2, (n,), generator=gen).to(DTYPE) * 2 - 1
    return mag * sign


def make_base_params(cfg, num_labels, gen):
    """Base model + head tensors, HF names without the 'bert.' prefix."""
    h = cfg["hidden_size"]
    p = {}

    def mat(name, *shape):
        p[name] = torch.randn(*shape, dtype=DTYPE, generator=gen) * MATRIX_STD

    def bias(name, n):
        p[name] = torch.randn(n, dtype=DTYPE, generator=gen) * BIAS_STD

    def ln(prefix, n):
        p[prefix + ".weight"] = 1 + LN_WEIGHT_STD * torch.randn(n, dtype=DTYPE, generator=gen)
        bias(prefix + ".bias", n)

    mat("embeddings.word_embeddings.weight", cfg["vocab_size"], h)
    mat("embeddings.position_embeddings.weight", cfg["max_position_embeddings"], h)
    mat("embeddings.token_type_embeddings.weight", cfg["type_vocab_size"], h)
    ln("embeddings.LayerNorm", h)
    for i in range(cfg["num_hidden_layers"]):
        pre = f"encoder.layer.{i}."
        for path, o, n in linear_shapes(cfg):
            if not path.startswith(pre):
                continue
            mat(path + ".weight", o, n)
            bias(path + ".bias", o)
            if path.endswith("attention.output.dense"):
                ln(pre + "attention.output.LayerNorm", h)
            if path.endswith(".output.dense") and ".attention." not in path:
                ln(pre + "output.LayerNorm", h)
    mat("pooler.dense.weight", h, h)
    bias("pooler.dense.bias", h)
    mat("classifier.weight", num_labels, h)
    bias("classifier.bias", num_labels)
    return {k: f32_round(v) for k, v in p.items()}


def make_adapter_params(cfg, method, rank, gen):
    """lora_A (r x in), lora_B (out x r), and for aflora s_d (r), s_b (out)."""
    p = {}
    if method == "full":
        return p
    for path, o, n in linear_shapes(cfg):
        p[path + ".lora_A"] = torch.randn(rank, n, dtype=DTYPE, generator=gen) * ADAPTER_MATRIX_STD
        p[path + ".lora_B"] = torch.randn(o, rank, dtype=DTYPE, generator=gen) * ADAPTER_MATRIX_STD
        if method in ("aflora", "elora"):
            p[path + ".s_d"] = random_scale(gen, rank)
            p[path + ".s_b"] = random_scale(gen, o)
    return {k: f32_round(v) for k, v in p.items()}


# ----------------------------------------------------------------- model ---

def position_ids(cfg, input_ids):
    """BERT: 0..S-1. RoBERTa: HF create_position_ids_from_input_ids."""
    if cfg["model_type"] == "roberta":
        pad = cfg["pad_token_id"]
        mask = (input_ids != pad).long()
        return torch.cumsum(mask, dim=1) * mask + pad
    s = input_ids.shape[1]
    return torch.arange(s).unsqueeze(0).expand_as(input_ids)


def layer_norm(x, w, b, eps):
    """HF nn.LayerNorm: biased variance over the last dimension."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu_erf(x):
    """HF 'gelu' = exact erf GELU."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def adapted_linear(p, path, x, spec):
    """y = x W0^T + b0 (+ adapter term when `path` carries an adapter)."""
    y = x @ p[path + ".weight"].t() + p[path + ".bias"]
    method = spec["method"]
    if method == "full" or (path + ".lora_A") not in p:
        return y
    down = x @ p[path + ".lora_A"].t()
    if method in ("aflora", "elora"):
        return y + p[path + ".s_b"] * ((p[path + ".s_d"] * down) @ p[path + ".lora_B"].t())
    if method == "lora":
        return y + (spec["alpha"] / spec["rank"]) * (down @ p[path + ".lora_B"].t())
    raise ValueError(f"unknown method {method}")


def forward(p, inputs, cfg, spec):
    """Return (logits, loss) of the sequence-classification model."""
    ids = inputs["input_ids"]
    tt = inputs["token_type_ids"]
    am = inputs["attention_mask"]
    eps = cfg["layer_norm_eps"]
    h = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    hd = h // nh
    b, s = ids.shape

    x = (p["embeddings.word_embeddings.weight"][ids]
         + p["embeddings.position_embeddings.weight"][position_ids(cfg, ids)]
         + p["embeddings.token_type_embeddings.weight"][tt])
    x = layer_norm(x, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"], eps)

    # HF extended attention mask: (1 - mask) * finfo.min, broadcast over heads/queries.
    ext = (1.0 - am.to(DTYPE))[:, None, None, :] * torch.finfo(DTYPE).min

    def heads(t):
        return t.view(b, s, nh, hd).permute(0, 2, 1, 3)

    for i in range(cfg["num_hidden_layers"]):
        pre = f"encoder.layer.{i}."
        q = heads(adapted_linear(p, pre + "attention.self.query", x, spec))
        k = heads(adapted_linear(p, pre + "attention.self.key", x, spec))
        v = heads(adapted_linear(p, pre + "attention.self.value", x, spec))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + ext
        probs = torch.softmax(scores, dim=-1)
        ctx = (probs @ v).permute(0, 2, 1, 3).reshape(b, s, h)
        a = adapted_linear(p, pre + "attention.output.dense", ctx, spec)
        h1 = layer_norm(a + x, p[pre + "attention.output.LayerNorm.weight"],
                        p[pre + "attention.output.LayerNorm.bias"], eps)
        inter = gelu_erf(adapted_linear(p, pre + "intermediate.dense", h1, spec))
        o = adapted_linear(p, pre + "output.dense", inter, spec)
        x = layer_norm(o + h1, p[pre + "output.LayerNorm.weight"],
                       p[pre + "output.LayerNorm.bias"], eps)

    pooled = torch.tanh(x[:, 0] @ p["pooler.dense.weight"].t() + p["pooler.dense.bias"])
    logits = pooled @ p["classifier.weight"].t() + p["classifier.bias"]

    labels = inputs["labels"]
    if spec["num_labels"] == 1:
        loss = ((logits[:, 0] - labels.to(DTYPE)) ** 2).mean()
    else:
        # mean cross-entropy, written out: -log softmax at the label.
        logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        loss = -logp.gather(1, labels.long().unsqueeze(1)).squeeze(1).mean()
    return logits, loss


# ---------------------------------------------------------------- inputs ---

def make_inputs(cfg, num_labels, gen, batch=BATCH, seq=SEQ, lengths=LENGTHS,
                pair_row=PAIR_ROW, pair_first=PAIR_FIRST_SEGMENT):
    pad = cfg["pad_token_id"]
    ids = torch.full((batch, seq), pad, dtype=torch.long)
    tt = torch.zeros((batch, seq), dtype=torch.long)
    am = torch.zeros((batch, seq), dtype=torch.long)
    for r, n in enumerate(lengths):
        # random ids in [0, vocab) skipping pad: draw in [0, vocab-1) and shift
        draw = torch.randint(0, cfg["vocab_size"] - 1, (n,), generator=gen)
        ids[r, :n] = draw + (draw >= pad).long()
        am[r, :n] = 1
        if r == pair_row:
            tt[r, pair_first:n] = 1
    if num_labels == 1:
        labels = f32_round(torch.randn(batch, dtype=DTYPE, generator=gen))
    else:
        labels = torch.randint(0, num_labels, (batch,), generator=gen)
    return {"input_ids": ids, "token_type_ids": tt, "attention_mask": am, "labels": labels}


# ----------------------------------------------------------- safetensors ---

def write_safetensors(path, tensors, metadata):
    """Write F32 tensors (name -> tensor) in insertion order."""
    header = {}
    blobs = []
    off = 0
    for name, t in tensors.items():
        arr = t.detach().to(torch.float32).contiguous().reshape(-1)
        data = struct.pack("<%df" % arr.numel(), *arr.tolist())
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((-len(hj)) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(hj)))
        fh.write(hj)
        for d in blobs:
            fh.write(d)


# ------------------------------------------------------------- the cases ---

def trainable_names(base, adapters, method):
    head = [n for n in base if n.startswith(("pooler.", "classifier."))]
    if method == "full":
        return list(base)
    return list(adapters) + head


def build_case(seed, cfg, method, rank, alpha, num_labels):
    gen = torch.Generator().manual_seed(seed)
    base = make_base_params(cfg, num_labels, gen)
    adapters = make_adapter_params(cfg, method, rank, gen)
    inputs = make_inputs(cfg, num_labels, gen)
    spec = {"method": method, "rank": rank, "alpha": alpha, "num_labels": num_labels}
    return base, adapters, inputs, spec


def run_case(name, seed, cfg, method, rank, alpha, num_labels):
    base, adapters, inputs, spec = build_case(seed, cfg, method, rank, alpha, num_labels)
    params = dict(base)
    params.update(adapters)
    train = trainable_names(base, adapters, method)
    for n in train:
        params[n] = params[n].clone().requires_grad_(True)
    logits, loss = forward(params, inputs, cfg, spec)
    grads = torch.autograd.grad(loss, [params[n] for n in train])

    tensors = {}
    for n, t in base.items():
        tensors[n] = t
    for n, t in adapters.items():
        tensors[n] = t
    for k in ("input_ids", "token_type_ids", "attention_mask", "labels"):
        tensors["in." + k] = inputs[k].to(DTYPE)
    tensors["out.logits"] = logits.detach()
    tensors["out.loss"] = loss.detach().reshape(1)
    for n, g in zip(train, grads):
        tensors["grad." + n] = g
    metadata = {
        "config": json.dumps(cfg, indent=2),
        "method": method,
        "rank": rank,
        "alpha": alpha,
        "num_labels": num_labels,
        "task": "regression" if num_labels == 1 else "classification",
        "generator": "tests/golden/gen_golden.py",
    }
    path = os.path.join(GOLDEN_DIR, name + ".safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"{name}: loss {loss.item():.9g}, logits {logits.detach().flatten().tolist()}, "
          f"{len(train)} gradients, {os.path.getsize(path)} bytes -> {path}")
    return path


CASES = [
    # name, seed, config, method, rank, alpha, num_labels
    ("aflora_cls", 1001, make_config(), "aflora", 4, 0, 3),
    ("lora_cls", 1002, make_config(), "lora", 4, 8, 2),
    ("full_reg", 1003, make_config(), "full", 0, 0, 1),
    ("roberta_aflora", 1004, make_config(model_type="roberta", pad_token_id=1),
     "aflora", 3, 0, 2),
]


# ------------------------------------------------------------ self-check ---

def check_ops():
    """Hand-written ops against the torch.nn.functional versions HF calls."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 5, 16, dtype=DTYPE, generator=g) * 3
    w = torch.randn(16, dtype=DTYPE, generator=g)
    b = torch.randn(16, dtype=DTYPE, generator=g)
    assert torch.allclose(layer_norm(x, w, b, 1e-12), F.layer_norm(x, (16,), w, b, 1e-12),
                          rtol=1e-12, atol=1e-12)
    assert torch.allclose(gelu_erf(x), F.gelu(x), rtol=1e-14, atol=1e-14)
    logits = torch.randn(5, 3, dtype=DTYPE, generator=g)
    labels = torch.randint(0, 3, (5,), generator=g)
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    mine = -logp.gather(1, labels.unsqueeze(1)).squeeze(1).mean()
    assert torch.allclose(mine, F.cross_entropy(logits, labels), rtol=1e-14, atol=0)
    # RoBERTa positions for pad 1: [5,6,7,1,1] -> [2,3,4,1,1]
    ids = torch.tensor([[5, 6, 7, 1, 1]])
    assert position_ids({"model_type": "roberta", "pad_token_id": 1}, ids).tolist() == \
        [[2, 3, 4, 1, 1]]
    print("ops check: layer_norm, gelu, cross-entropy, roberta positions match torch/HF")


def check_gradients():
    """gradcheck (finite differences, float64) on tiny models of each method."""
    tiny = dict(vocab_size=11, hidden_size=4, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=6, max_position_embeddings=8)
    setups = [
        (make_config(**tiny), "aflora", 2, 0, 3),
        (make_config(**tiny), "lora", 2, 4, 2),
        (make_config(**tiny), "full", 0, 0, 1),
        (make_config(model_type="roberta", pad_token_id=1, **tiny), "aflora", 2, 0, 2),
    ]
    for k, (cfg, method, rank, alpha, nl) in enumerate(setups):
        gen = torch.Generator().manual_seed(50 + k)
        base = make_base_params(cfg, nl, gen)
        adapters = make_adapter_params(cfg, method, rank, gen)
        inputs = make_inputs(cfg, nl, gen, batch=2, seq=4, lengths=(4, 2), pair_row=0,
                             pair_first=2)
        spec = {"method": method, "rank": rank, "alpha": alpha, "num_labels": nl}
        fixed = dict(base)
        fixed.update(adapters)
        train = trainable_names(base, adapters, method)
        leaves = tuple(fixed[n].clone().requires_grad_(True) for n in train)

        def fn(*ts):
            p = dict(fixed)
            p.update(zip(train, ts))
            logits, loss = forward(p, inputs, cfg, spec)
            return loss, logits

        ok = torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)
        assert ok
        n_el = sum(t.numel() for t in leaves)
        print(f"gradcheck {cfg['model_type']}/{method}: {len(leaves)} tensors, "
              f"{n_el} elements: ok")


def main():
    torch.set_default_dtype(DTYPE)
    check_ops()
    check_gradients()
    for case in CASES:
        run_case(*case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
