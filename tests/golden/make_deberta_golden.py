#!/usr/bin/python3
"""Independent float64 PyTorch reference for the engine's DeBERTa family.

Writes tests/golden/deberta_<case>.safetensors: a tiny random
DebertaV2ForSequenceClassification (base weights, adapters, head, under the
engine's names: the checkpoint's without "deberta."), one batch, the logits
and loss of a forward pass, and the gradient of the loss with respect to
every tensor that trains in that case. The layout is gen_golden.py's, so
tests/test_deberta.c reads the files the way test_golden.c reads BERT's.

The model is a from-scratch port of the mathematics in docs/deberta.md,
after transformers' modeling_deberta_v2.py (transformers is not used):
- embeddings: word (+ positions when position_biased_input, + token types when
  type_vocab_size > 0), LayerNorm, times the token mask;
- rel_embeddings (2*span rows), LayerNorm_enc when norm_rel_ebd is
  "layer_norm"; relative positions i - j through make_log_bucket_position
  (float32, as torch evaluates it) when position_buckets > 0; the c2p and
  p2c terms computed as transformers does: a full (seq x 2*span) product,
  then torch.gather, p2c transposed; scale sqrt(d * (1 + len(pos_att_type)));
- share_att_key: positional keys/queries through the layer's own key_proj /
  query_proj (adapter included, as PEFT's wrapped modules compute them), else
  pos_key_proj / pos_query_proj;
- mask m_ij = a_i a_j, masked scores to finfo.min, softmax;
- post-LN blocks with erf GELU; ContextPooler gelu(dense(h[:,0])); classifier;
  mean cross-entropy, or MSE with one label.
Dropout is off. Weights are rounded to float32 first, so the fixtures hold
exactly what the C engine reads.

Before writing, the script checks itself: torch.autograd.gradcheck of the loss
on a smaller case of every configuration, the bucket function against the
values in docs/deberta.md, and the gather against a direct per-(i,j) sum.

CI never runs this; regenerate with
    /usr/bin/python3 tests/golden/make_deberta_golden.py
"""

import json
import math
import os
import struct

import torch

DTYPE = torch.float64
GOLDEN_DIR = os.path.dirname(os.path.abspath(__file__))

MODULES = ("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj",
           "attention.output.dense", "intermediate.dense", "output.dense")
MATRIX_STD = 0.2
BIAS_STD = 0.1
LN_WEIGHT_STD = 0.1
ADAPTER_MATRIX_STD = 0.3

BATCH, SEQ, LENGTHS = 3, 7, (7, 5, 3)


def make_config(**kw):
    cfg = {
        "model_type": "deberta-v2",
        "vocab_size": 40,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 24,
        "type_vocab_size": 0,
        "pad_token_id": 0,
        "layer_norm_eps": 1e-7,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "relative_attention": True,
        "position_biased_input": False,
        "pos_att_type": ["p2c", "c2p"],
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "position_buckets": 4,
        "max_relative_positions": 6,
    }
    cfg.update(kw)
    return cfg


def att_span(cfg):
    if cfg["position_buckets"] > 0:
        return cfg["position_buckets"]
    m = cfg["max_relative_positions"]
    return m if m > 0 else cfg["max_position_embeddings"]


def f32(t):
    return t.to(torch.float32).to(DTYPE)


# ------------------------------------------------------------ parameters ---

def make_base(cfg, num_labels, gen):
    h, f, p = cfg["hidden_size"], cfg["intermediate_size"], {}

    def mat(name, *shape):
        p[name] = f32(torch.randn(*shape, dtype=DTYPE, generator=gen) * MATRIX_STD)

    def vec(name, n, std=BIAS_STD, mean=0.0):
        p[name] = f32(mean + torch.randn(n, dtype=DTYPE, generator=gen) * std)

    def ln(prefix):
        vec(prefix + ".weight", h, LN_WEIGHT_STD, 1.0)
        vec(prefix + ".bias", h)

    mat("embeddings.word_embeddings.weight", cfg["vocab_size"], h)
    if cfg["position_biased_input"]:
        mat("embeddings.position_embeddings.weight", cfg["max_position_embeddings"], h)
    if cfg["type_vocab_size"] > 0:
        mat("embeddings.token_type_embeddings.weight", cfg["type_vocab_size"], h)
    ln("embeddings.LayerNorm")
    dims = {"intermediate.dense": (f, h), "output.dense": (h, f)}
    for i in range(cfg["num_hidden_layers"]):
        for mod in MODULES:
            o, n = dims.get(mod, (h, h))
            mat(f"encoder.layer.{i}.{mod}.weight", o, n)
            vec(f"encoder.layer.{i}.{mod}.bias", o)
            if mod == "attention.self.value_proj" and not cfg["share_att_key"]:
                for pos, name in (("c2p", "pos_key_proj"), ("p2c", "pos_query_proj")):
                    if pos in cfg["pos_att_type"]:
                        mat(f"encoder.layer.{i}.attention.self.{name}.weight", h, h)
                        vec(f"encoder.layer.{i}.attention.self.{name}.bias", h)
            if mod == "attention.output.dense":
                ln(f"encoder.layer.{i}.attention.output.LayerNorm")
            if mod == "output.dense":
                ln(f"encoder.layer.{i}.output.LayerNorm")
    if cfg["relative_attention"]:
        mat("encoder.rel_embeddings.weight", 2 * att_span(cfg), h)
        if cfg["norm_rel_ebd"] == "layer_norm":
            ln("encoder.LayerNorm")
    mat("pooler.dense.weight", h, h)
    vec("pooler.dense.bias", h)
    mat("classifier.weight", num_labels, h)
    vec("classifier.bias", num_labels)
    return p


def make_adapters(cfg, method, rank, gen):
    if method == "full":
        return {}
    h, f, p = cfg["hidden_size"], cfg["intermediate_size"], {}
    dims = {"intermediate.dense": (f, h), "output.dense": (h, f)}
    for i in range(cfg["num_hidden_layers"]):
        for mod in MODULES:
            o, n = dims.get(mod, (h, h))
            pre = f"encoder.layer.{i}.{mod}"
            p[pre + ".lora_A"] = f32(torch.randn(rank, n, dtype=DTYPE, generator=gen)
                                     * ADAPTER_MATRIX_STD)
            p[pre + ".lora_B"] = f32(torch.randn(o, rank, dtype=DTYPE, generator=gen)
                                     * ADAPTER_MATRIX_STD)
            if method in ("aflora", "elora"):
                for v, n_ in (("s_d", rank), ("s_b", o)):
                    mag = torch.empty(n_, dtype=DTYPE).uniform_(0.5, 1.5, generator=gen)
                    sign = torch.randint(0, 2, (n_,), generator=gen).to(DTYPE) * 2 - 1
                    p[pre + "." + v] = f32(mag * sign)
    return p


# ----------------------------------------------------------------- model ---

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def linear(p, path, x, spec):
    y = x @ p[path + ".weight"].t() + p[path + ".bias"]
    if spec["method"] == "full" or (path + ".lora_A") not in p:
        return y
    down = x @ p[path + ".lora_A"].t()
    if spec["method"] in ("aflora", "elora"):
        return y + p[path + ".s_b"] * ((p[path + ".s_d"] * down) @ p[path + ".lora_B"].t())
    return y + (spec["alpha"] / spec["rank"]) * (down @ p[path + ".lora_B"].t())


def log_bucket(rel, bucket_size, max_position):
    """transformers' make_log_bucket_position, on a long tensor (float32 inside)."""
    sign = torch.sign(rel)
    mid = bucket_size // 2
    abs_pos = torch.where((rel < mid) & (rel > -mid), torch.tensor(mid - 1).type_as(rel),
                          torch.abs(rel))
    log_pos = torch.ceil(torch.log(abs_pos / mid)
                         / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, rel.type_as(log_pos), log_pos * sign)


def relative_position(cfg, q, k):
    rel = torch.arange(q)[:, None] - torch.arange(k)[None, :]
    mp = cfg["max_relative_positions"]
    if mp < 1:
        mp = cfg["max_position_embeddings"]
    if cfg["position_buckets"] > 0 and mp > 0:
        rel = log_bucket(rel, cfg["position_buckets"], mp)
    return rel.to(torch.long)


def forward(p, inputs, cfg, spec):
    ids, tt, am = inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"]
    eps, h, nh = cfg["layer_norm_eps"], cfg["hidden_size"], cfg["num_attention_heads"]
    d = h // nh
    b, s = ids.shape
    x = p["embeddings.word_embeddings.weight"][ids]
    if cfg["position_biased_input"]:
        x = x + p["embeddings.position_embeddings.weight"][torch.arange(s)][None]
    if cfg["type_vocab_size"] > 0:
        x = x + p["embeddings.token_type_embeddings.weight"][tt]
    x = layer_norm(x, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"], eps)
    x = x * am[:, :, None].to(DTYPE)

    pos_types = cfg["pos_att_type"]
    scale_factor = 1 + len(pos_types)
    scale = math.sqrt(d * scale_factor)
    mask2 = (am[:, None, :] * am[:, :, None]).bool()[:, None]  # b,1,s,s
    span = att_span(cfg)
    rel = None
    if cfg["relative_attention"]:
        rel = p["encoder.rel_embeddings.weight"]
        if cfg["norm_rel_ebd"] == "layer_norm":
            rel = layer_norm(rel, p["encoder.LayerNorm.weight"], p["encoder.LayerNorm.bias"], eps)
        rpos = relative_position(cfg, s, s)

    def heads(t):  # (.., n, h) -> (.., nh, n, d)
        return t.view(*t.shape[:-1], nh, d).transpose(-2, -3)

    for i in range(cfg["num_hidden_layers"]):
        pre = f"encoder.layer.{i}."
        q = heads(linear(p, pre + "attention.self.query_proj", x, spec))
        k = heads(linear(p, pre + "attention.self.key_proj", x, spec))
        v = heads(linear(p, pre + "attention.self.value_proj", x, spec))
        scores = q @ k.transpose(-1, -2) / scale
        if rel is not None and pos_types:
            if cfg["share_att_key"]:
                pk = heads(linear(p, pre + "attention.self.key_proj", rel, spec))
                pq = heads(linear(p, pre + "attention.self.query_proj", rel, spec))
            else:
                if "c2p" in pos_types:
                    pk = heads(linear(p, pre + "attention.self.pos_key_proj", rel, spec))
                if "p2c" in pos_types:
                    pq = heads(linear(p, pre + "attention.self.pos_query_proj", rel, spec))
            if "c2p" in pos_types:
                c2p = q @ pk.transpose(-1, -2)  # b,nh,s,2span
                idx = torch.clamp(rpos + span, 0, 2 * span - 1).expand(b, nh, s, s)
                scores = scores + torch.gather(c2p, -1, idx) / scale
            if "p2c" in pos_types:
                p2c = k @ pq.transpose(-1, -2)  # b,nh,s(key),2span
                idx = torch.clamp(-rpos + span, 0, 2 * span - 1).expand(b, nh, s, s)
                scores = scores + torch.gather(p2c, -1, idx).transpose(-1, -2) / scale
        scores = scores.masked_fill(~mask2, torch.finfo(DTYPE).min)
        probs = torch.softmax(scores, -1)
        ctx = (probs @ v).transpose(-2, -3).reshape(b, s, h)
        a = linear(p, pre + "attention.output.dense", ctx, spec)
        h1 = layer_norm(a + x, p[pre + "attention.output.LayerNorm.weight"],
                        p[pre + "attention.output.LayerNorm.bias"], eps)
        inter = gelu(linear(p, pre + "intermediate.dense", h1, spec))
        o = linear(p, pre + "output.dense", inter, spec)
        x = layer_norm(o + h1, p[pre + "output.LayerNorm.weight"],
                       p[pre + "output.LayerNorm.bias"], eps)

    pooled = gelu(x[:, 0] @ p["pooler.dense.weight"].t() + p["pooler.dense.bias"])
    logits = pooled @ p["classifier.weight"].t() + p["classifier.bias"]
    labels = inputs["labels"]
    if spec["num_labels"] == 1:
        loss = ((logits[:, 0] - labels.to(DTYPE)) ** 2).mean()
    else:
        logp = logits - torch.logsumexp(logits, -1, keepdim=True)
        loss = -logp.gather(1, labels.long().unsqueeze(1)).squeeze(1).mean()
    return logits, loss


def make_inputs(cfg, num_labels, gen, lengths=LENGTHS, seq=SEQ):
    batch = len(lengths)
    ids = torch.zeros((batch, seq), dtype=torch.long)
    tt = torch.zeros((batch, seq), dtype=torch.long)
    am = torch.zeros((batch, seq), dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, :n] = torch.randint(1, cfg["vocab_size"], (n,), generator=gen)
        am[r, :n] = 1
        if r == 1 and cfg["type_vocab_size"] > 1:
            tt[r, 3:n] = 1
    if num_labels == 1:
        labels = f32(torch.randn(batch, dtype=DTYPE, generator=gen))
    else:
        labels = torch.randint(0, num_labels, (batch,), generator=gen)
    return {"input_ids": ids, "token_type_ids": tt, "attention_mask": am, "labels": labels}


def trainable(base, adapters, method):
    head = [n for n in base if n.startswith(("pooler.", "classifier."))]
    if method == "full":
        return list(base)
    if method == "elora":
        return [n for n in adapters if n.endswith((".s_d", ".s_b"))] + head
    return list(adapters) + head


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {}, [], 0
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
        for blob in blobs:
            fh.write(blob)


# ------------------------------------------------------------- the cases ---

V2 = dict(position_biased_input=True, type_vocab_size=2, share_att_key=False,
          norm_rel_ebd="none", position_buckets=-1, max_relative_positions=5,
          layer_norm_eps=1e-12)

CASES = [
    # name, seed, config, method, rank, alpha, num_labels
    ("deberta_v3_aflora", 2001, make_config(), "aflora", 4, 0, 3),
    ("deberta_v3_full_reg", 2002, make_config(), "full", 0, 0, 1),
    ("deberta_v2_lora", 2003, make_config(**V2), "lora", 4, 8, 2),
    ("deberta_c2p_full", 2004, make_config(**dict(V2, pos_att_type=["c2p"])), "full", 0, 0, 2),
    ("deberta_p2c_elora", 2005, make_config(pos_att_type=["p2c"]), "elora", 40, 0, 2),
]


def run_case(name, seed, cfg, method, rank, alpha, num_labels):
    gen = torch.Generator().manual_seed(seed)
    base = make_base(cfg, num_labels, gen)
    adapters = make_adapters(cfg, method, rank, gen)
    inputs = make_inputs(cfg, num_labels, gen)
    spec = {"method": method, "rank": rank, "alpha": alpha, "num_labels": num_labels}
    params = dict(base)
    params.update(adapters)
    train = trainable(base, adapters, method)
    for n in train:
        params[n] = params[n].clone().requires_grad_(True)
    logits, loss = forward(params, inputs, cfg, spec)
    grads = torch.autograd.grad(loss, [params[n] for n in train])
    tensors = dict(base)
    tensors.update(adapters)
    for k in ("input_ids", "token_type_ids", "attention_mask", "labels"):
        tensors["in." + k] = inputs[k].to(DTYPE)
    tensors["out.logits"] = logits.detach()
    tensors["out.loss"] = loss.detach().reshape(1)
    for n, g in zip(train, grads):
        assert g.abs().max() > 0, f"{name}: gradient of {n} is zero"
        tensors["grad." + n] = g
    metadata = {
        "config": json.dumps(cfg, indent=2),
        "method": method,
        "rank": rank,
        "alpha": alpha,
        "num_labels": num_labels,
        "task": "regression" if num_labels == 1 else "classification",
        "generator": "tests/golden/make_deberta_golden.py",
    }
    path = os.path.join(GOLDEN_DIR, name + ".safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"{name}: loss {loss.item():.9g}, {len(train)} gradients, "
          f"{os.path.getsize(path)} bytes")


# ------------------------------------------------------------ self-check ---

def check_buckets():
    rel = torch.tensor([0, 1, -5, 128, 129, 140, 256, 511, 512, -140, -512])
    got = log_bucket(rel, 256, 512).to(torch.long).tolist()
    want = [0, 1, -5, 128, 129, 137, 192, 255, 256, -137, -256]
    assert got == want, (got, want)


def check_gather():
    """c2p/p2c via gather equal the direct per-(i,j) sums of docs/deberta.md."""
    cfg = make_config()
    gen = torch.Generator().manual_seed(7)
    s, span, d = 7, att_span(cfg), 5
    q, k = torch.randn(s, d, dtype=DTYPE, generator=gen), torch.randn(s, d, dtype=DTYPE,
                                                                        generator=gen)
    kr, qr = (torch.randn(2 * span, d, dtype=DTYPE, generator=gen) for _ in range(2))
    rpos = relative_position(cfg, s, s)
    c2p = torch.gather(q @ kr.t(), -1, torch.clamp(rpos + span, 0, 2 * span - 1))
    p2c = torch.gather(k @ qr.t(), -1, torch.clamp(-rpos + span, 0, 2 * span - 1)).t()
    for i in range(s):
        for j in range(s):
            r = min(max(int(rpos[i, j]) + span, 0), 2 * span - 1)
            assert abs(c2p[i, j] - q[i] @ kr[r]) < 1e-12
            assert abs(p2c[i, j] - k[j] @ qr[r]) < 1e-12


def check_gradients():
    for name, seed, cfg, method, rank, alpha, num_labels in CASES:
        cfg = dict(cfg, num_hidden_layers=1)
        gen = torch.Generator().manual_seed(seed)
        base = make_base(cfg, num_labels, gen)
        adapters = make_adapters(cfg, method, min(rank, 3) if rank else 0, gen)
        inputs = make_inputs(cfg, num_labels, gen)
        spec = {"method": method, "rank": min(rank, 3), "alpha": alpha,
                "num_labels": num_labels}
        names = trainable(base, adapters, method)
        params = dict(base)
        params.update(adapters)

        def loss_of(*ts):
            q = dict(params)
            q.update(zip(names, ts))
            return forward(q, inputs, cfg, spec)[1]

        ts = tuple(params[n].clone().requires_grad_(True) for n in names)
        assert torch.autograd.gradcheck(loss_of, ts, eps=1e-6, atol=1e-6), name


if __name__ == "__main__":
    check_buckets()
    check_gather()
    check_gradients()
    for case in CASES:
        run_case(*case)
