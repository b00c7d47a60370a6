#!/usr/bin/python3
"""Independent float64 PyTorch reference for the engine's LLaMA family.

Writes tests/golden/llama_<case>.safetensors: a tiny random LLaMA-family
causal LM (base weights, adapter tensors), one right-padded batch with
per-token labels, the logits and loss of a forward pass, and the gradient of
the loss with respect to every tensor that trains in that case.

Written from the formulas (docs/llama.md, transformers' modeling_llama.py
semantics), not by importing transformers (not installed):
- RMSNorm: x * rsqrt(mean(x^2) + eps) * weight.
- Pre-norm blocks: h = x + o_proj(attn(input_layernorm(x)));
  out = h + down_proj(silu(gate_proj(u)) * up_proj(u)), u = post_attention_layernorm(h).
- RoPE, rotate-half pairing (j, j + d/2), inv_freq = theta^(-2j/d) with the
  linear or llama3 rope_scaling, positions 0..S-1 (HF's default position_ids).
- Grouped-query attention: query head h reads KV head h // (nH / nKV);
  scores q.k / sqrt(d); causal + padding mask (+ Mistral's sliding window:
  key s visible from t when t - s < window). One convention is the engine's
  own: a query row that sees no key at all (a padded position whose window
  holds only padding) outputs 0, where HF's additive mask would average
  over masked keys; such rows carry no label, so the loss is HF's either way.
- Final norm, lm_head (or embed_tokens when tied), loss = mean cross-entropy
  of logits[:, :-1] against labels[:, 1:] over labels != -100 (the model
  shifts, as LlamaForCausalLM does).
- Adapted linear (aflora/elora): y = x W^T + b + s_b * ((s_d * (x A^T)) B^T);
  lora: y = x W^T + b + (alpha / r) (x A^T) B^T.

Everything is float64 computed from weights first rounded to float32, so the
fixtures hold exactly the numbers the C engine reads. Before writing, the
reference checks itself: torch.autograd.gradcheck (finite differences) of
the loss on a tiny model, RMSNorm and SiLU against torch.nn.functional, and
the rotate-half rotation against the complex-number form of RoPE.

safetensors is written by hand (as gen_golden.py does). The C test
(tests/test_llama.c) reads the files; CI never runs this script.
Regenerate with:  /usr/bin/python3 tests/golden/make_llama_golden.py
"""

import json
import math
import os
import struct

import torch
import torch.nn.functional as F

DTYPE = torch.float64
GOLDEN_DIR = os.path.dirname(os.path.abspath(__file__))

MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")

MATRIX_STD = 0.2
EMBED_STD = 0.5
BIAS_STD = 0.1
NORM_WEIGHT_STD = 0.1
ADAPTER_MATRIX_STD = 0.3
ADAPTER_SCALE_LO, ADAPTER_SCALE_HI = 0.5, 1.5

# The batch: 3 sequences of 7 tokens, lengths 7, 5, 3, right-padded with id
# 0; labels = ids, -100 on padding and on the first two tokens of sequence 0
# (a "prompt" without loss).
BATCH, SEQ, LENGTHS = 3, 7, (7, 5, 3)
PROMPT_ROW, PROMPT_LEN = 0, 2


def f32_round(t):
    return t.to(torch.float32).to(DTYPE)


def make_config(model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=48,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                head_dim=None, tie_word_embeddings=False, rope_theta=10000.0,
                rope_scaling=None, sliding_window=None, rms_norm_eps=1e-6):
    cfg = {
        "architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                           "qwen2": "Qwen2ForCausalLM"}[model_type]],
        "model_type": model_type,
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": 64,
        "rms_norm_eps": rms_norm_eps,
        "rope_theta": rope_theta,
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": tie_word_embeddings,
        "pad_token_id": None,
    }
    if head_dim is not None:
        cfg["head_dim"] = head_dim
    if sliding_window is not None:
        cfg["sliding_window"] = sliding_window
    return cfg


def head_dim_of(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def linear_dims(cfg):
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    hd = head_dim_of(cfg)
    qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    return {"self_attn.q_proj": (qd, h), "self_attn.k_proj": (kvd, h),
            "self_attn.v_proj": (kvd, h), "self_attn.o_proj": (h, qd),
            "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h), "mlp.down_proj": (h, i)}


def has_bias(cfg, module):
    return cfg["model_type"] == "qwen2" and module in MODULES[:3]


# ------------------------------------------------------------ parameters ---

def make_base(cfg, gen):
    """Engine names (HF names without "model.")."""
    p = {}
    h = cfg["hidden_size"]

    def randn(*shape, std):
        return torch.randn(*shape, dtype=DTYPE, generator=gen) * std

    p["embed_tokens.weight"] = randn(cfg["vocab_size"], h, std=EMBED_STD)
    for l in range(cfg["num_hidden_layers"]):
        pre = f"layers.{l}."
        p[pre + "input_layernorm.weight"] = 1 + randn(h, std=NORM_WEIGHT_STD)
        for mod in MODULES:
            o, n = linear_dims(cfg)[mod]
            if mod == "mlp.gate_proj":
                p[pre + "post_attention_layernorm.weight"] = 1 + randn(h, std=NORM_WEIGHT_STD)
            p[pre + mod + ".weight"] = randn(o, n, std=MATRIX_STD)
            if has_bias(cfg, mod):
                p[pre + mod + ".bias"] = randn(o, std=BIAS_STD)
    p["norm.weight"] = 1 + randn(h, std=NORM_WEIGHT_STD)
    if not cfg["tie_word_embeddings"]:
        p["lm_head.weight"] = randn(cfg["vocab_size"], h, std=MATRIX_STD)
    return {k: f32_round(v) for k, v in p.items()}


def random_scale(gen, n):
    mag = torch.empty(n, dtype=DTYPE).uniform_(ADAPTER_SCALE_LO, ADAPTER_SCALE_HI, generator=gen)
    sign = torch.randint(0, 2, (n,), generator=gen).to(DTYPE) * 2 - 1
    return mag * sign


def make_adapters(cfg, method, rank, gen):
    p = {}
    if method == "full":
        return p
    for l in range(cfg["num_hidden_layers"]):
        for mod in MODULES:
            o, n = linear_dims(cfg)[mod]
            path = f"layers.{l}.{mod}"
            p[path + ".lora_A"] = torch.randn(rank, n, dtype=DTYPE, generator=gen) * ADAPTER_MATRIX_STD
            p[path + ".lora_B"] = torch.randn(o, rank, dtype=DTYPE, generator=gen) * ADAPTER_MATRIX_STD
            if method in ("aflora", "elora"):
                p[path + ".s_d"] = random_scale(gen, rank)
                p[path + ".s_b"] = random_scale(gen, o)
    return {k: f32_round(v) for k, v in p.items()}


def make_inputs(cfg, gen):
    ids = torch.randint(1, cfg["vocab_size"], (BATCH, SEQ), generator=gen)
    mask = torch.zeros(BATCH, SEQ, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
    ids = ids * mask  # padding id 0
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[PROMPT_ROW, :PROMPT_LEN] = -100
    return ids, mask, labels


# ----------------------------------------------------------------- model ---

def inv_freq_of(cfg):
    d = head_dim_of(cfg)
    j = torch.arange(0, d // 2, dtype=DTYPE)
    inv = cfg["rope_theta"] ** (-2 * j / d)
    rs = cfg["rope_scaling"]
    if rs is None:
        return inv
    if rs["rope_type"] == "linear":
        return inv / rs["factor"]
    assert rs["rope_type"] == "llama3"
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    ctx = rs["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    out = torch.where(wavelen > ctx / lo, inv / factor, inv)
    smooth = (ctx / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < ctx / hi) & ~(wavelen > ctx / lo)
    return torch.where(medium, smoothed, out)


def rope_cos_sin(cfg, S):
    freqs = torch.arange(S, dtype=DTYPE)[:, None] * inv_freq_of(cfg)[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    d = x.shape[-1]
    return torch.cat([-x[..., d // 2:], x[..., : d // 2]], dim=-1)


def apply_rope(x, cos, sin):  # x [B, heads, S, d]
    return x * cos + rotate_half(x) * sin


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def linear(P, path, x, method, rank, alpha):
    y = x @ P[path + ".weight"].T
    if path + ".bias" in P:
        y = y + P[path + ".bias"]
    if path + ".lora_A" in P:
        h1 = x @ P[path + ".lora_A"].T
        if method in ("aflora", "elora"):
            y = y + P[path + ".s_b"] * ((P[path + ".s_d"] * h1) @ P[path + ".lora_B"].T)
        else:
            y = y + (alpha / rank) * (h1 @ P[path + ".lora_B"].T)
    return y


def visible_mask(cfg, mask):
    """[B, 1, S, S] booleans: query t sees key s."""
    S = mask.shape[1]
    t = torch.arange(S)[:, None]
    s = torch.arange(S)[None, :]
    ok = s <= t
    w = cfg.get("sliding_window") if cfg["model_type"] == "mistral" else None
    if w:
        ok = ok & (t - s < w)
    return ok[None, None] & (mask[:, None, None, :] != 0)


def forward(cfg, P, ids, mask, labels, method, rank, alpha):
    B, S = ids.shape
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim_of(cfg)
    eps = cfg["rms_norm_eps"]
    cos, sin = rope_cos_sin(cfg, S)
    vis = visible_mask(cfg, mask)
    any_vis = vis.any(-1, keepdim=True)
    x = P["embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        pre = f"layers.{l}."
        u = rmsnorm(x, P[pre + "input_layernorm.weight"], eps)
        q = linear(P, pre + "self_attn.q_proj", u, method, rank, alpha)
        k = linear(P, pre + "self_attn.k_proj", u, method, rank, alpha)
        v = linear(P, pre + "self_attn.v_proj", u, method, rank, alpha)
        q = q.view(B, S, nh, hd).transpose(1, 2)
        k = k.view(B, S, nkv, hd).transpose(1, 2)
        v = v.view(B, S, nkv, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(~vis, float("-inf"))
        scores = torch.where(any_vis, scores, torch.zeros_like(scores))
        probs = torch.softmax(scores, dim=-1)
        probs = torch.where(any_vis, probs, torch.zeros_like(probs))
        ctx = (probs @ v).transpose(1, 2).reshape(B, S, nh * hd)
        h = x + linear(P, pre + "self_attn.o_proj", ctx, method, rank, alpha)
        u2 = rmsnorm(h, P[pre + "post_attention_layernorm.weight"], eps)
        g = linear(P, pre + "mlp.gate_proj", u2, method, rank, alpha)
        up = linear(P, pre + "mlp.up_proj", u2, method, rank, alpha)
        x = h + linear(P, pre + "mlp.down_proj", F.silu(g) * up, method, rank, alpha)
    x = rmsnorm(x, P["norm.weight"], eps)
    W = P["lm_head.weight"] if "lm_head.weight" in P else P["embed_tokens.weight"]
    logits = x @ W.T
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           labels[:, 1:].reshape(-1), ignore_index=-100)
    return logits, loss


def trainable(method, base, adapters):
    if method == "full":
        return list(base)
    if method == "elora":
        return [n for n in adapters if n.endswith((".s_d", ".s_b"))]
    return list(adapters)  # aflora with every projection trainable, lora


# ------------------------------------------------------------ self-checks ---

def self_check():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(5, 8, dtype=DTYPE, generator=gen)
    w = torch.randn(8, dtype=DTYPE, generator=gen)
    ref = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w
    assert torch.allclose(rmsnorm(x, w, 1e-6), ref)
    assert torch.allclose(F.silu(x), x * torch.sigmoid(x))
    # rotate-half RoPE == multiplying (x_j + i x_{j+d/2}) by e^{i pos theta_j}
    cfg = make_config(hidden_size=16, num_attention_heads=2)
    cos, sin = rope_cos_sin(cfg, 5)
    q = torch.randn(1, 1, 5, 8, dtype=DTYPE, generator=gen)
    z = torch.complex(q[..., :4], q[..., 4:])
    ang = torch.arange(5, dtype=DTYPE)[:, None] * inv_freq_of(cfg)[None, :]
    zr = z * torch.polar(torch.ones_like(ang), ang)
    assert torch.allclose(apply_rope(q, cos, sin), torch.cat([zr.real, zr.imag], -1))
    # finite differences of the whole loss, every method's trainable tensors
    for method, tied, mt in (("aflora", False, "llama"), ("lora", True, "mistral"),
                             ("full", False, "qwen2")):
        cfg = make_config(model_type=mt, vocab_size=12, hidden_size=8, intermediate_size=12,
                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                          tie_word_embeddings=tied, sliding_window=2)
        base = make_base(cfg, gen)
        ad = make_adapters(cfg, method, 2, gen)
        ids, mask, labels = make_inputs(cfg, gen)
        P = {**base, **ad}
        names = trainable(method, base, ad)

        def f(*ts):
            Q = dict(P)
            Q.update(zip(names, ts))
            return forward(cfg, Q, ids, mask, labels, method, 2, 3.0)[1]

        ts = [P[n].clone().requires_grad_(True) for n in names]
        assert torch.autograd.gradcheck(f, ts, eps=1e-6, atol=1e-7, rtol=1e-5), method


# ------------------------------------------------------------- writing ---

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
        for d in blobs:
            fh.write(d)


def run_case(name, seed, cfg, method, rank=4, alpha=8.0):
    gen = torch.Generator().manual_seed(seed)
    base = make_base(cfg, gen)
    ad = make_adapters(cfg, method, rank, gen)
    ids, mask, labels = make_inputs(cfg, gen)
    P = {k: v.clone().requires_grad_(True) for k, v in {**base, **ad}.items()}
    logits, loss = forward(cfg, P, ids, mask, labels, method, rank, alpha)
    names = trainable(method, base, ad)
    grads = torch.autograd.grad(loss, [P[n] for n in names])
    tensors = {k: v.detach() for k, v in P.items()}
    tensors["in.input_ids"] = ids.to(DTYPE)
    tensors["in.attention_mask"] = mask.to(DTYPE)
    tensors["in.labels"] = labels.to(DTYPE)
    tensors["out.logits"] = logits.detach()
    tensors["out.loss"] = loss.detach().reshape(1)
    for n, g in zip(names, grads):
        assert g.abs().max() > 0, f"{name}: zero gradient for {n}"
        tensors["grad." + n] = g
    meta = {"config": json.dumps(cfg), "method": method, "rank": rank, "alpha": alpha,
            "task": "causal_lm", "num_labels": cfg["vocab_size"]}
    path = os.path.join(GOLDEN_DIR, f"llama_{name}.safetensors")
    write_safetensors(path, tensors, meta)
    print(f"{path}: loss {loss.item():.6f}, {len(names)} gradients")


# With rope_theta 100 and head_dim 8 the wavelengths are 6.3, 19.9, 62.8 and
# 199 positions: against 64 / 1 and 64 / 4 that is one kept, two
# interpolated and one divided by factor, all of them turning enough over 7
# positions for a wrong factor to show in the logits.
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


def main():
    torch.manual_seed(0)
    self_check()
    # GQA 4 query heads on 2 KV heads, untied lm_head, AFLoRA on every module
    run_case("aflora", 101, make_config(), "aflora")
    # tied embeddings, full fine-tuning (embed_tokens gathers both gradients),
    # linear RoPE scaling
    run_case("full_tied", 102, make_config(tie_word_embeddings=True,
                                           rope_scaling={"rope_type": "linear", "factor": 2.0}),
             "full")
    # LoRA with llama3 RoPE scaling: every kind of frequency (kept,
    # interpolated, divided)
    run_case("lora_llama3", 103, make_config(rope_theta=100.0, rope_scaling=LLAMA3_SCALING),
             "lora", 4, 8.0)
    # Qwen2: q/k/v biases, full fine-tuning of everything, theta 1e6
    run_case("qwen2_full", 104, make_config(model_type="qwen2", rope_theta=1000000.0), "full")
    # Mistral: sliding window 3 over one KV head, head_dim given (12, not 32/4)
    run_case("mistral_elora", 105, make_config(model_type="mistral", num_key_value_heads=1,
                                               head_dim=12, sliding_window=3), "elora", 4)


if __name__ == "__main__":
    main()
