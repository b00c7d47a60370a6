#!/usr/bin/python3
"""Is the stories260K file (../shared/data/stories260K/stories260K.bin) read
right, and is it the trained model its author describes? A diagnostic, not
a fixture: it prints what it finds and writes nothing.

1. Layout: the statistics of every array at the offsets run.c's
   memory_map_weights gives (the RMSNorm weights must be the positive
   segments; matrices centred on 0), and the two legacy RoPE tables, which
   must equal cos/sin(pos * 10000^(-2j/head_size)) at exactly their
   offsets, and the file must end there.
2. Behaviour: at temperature 1 a trained model's mean predictive entropy
   on its own samples is close to its loss on real text (1.2968 nats/token
   for stories260K, its author's validation loss), and TinyStories text
   almost never needs the byte-fallback ids 3..258 of the 512-token
   vocabulary. Printed for the loader's reading (stories260k_reference.py:
   wq/wk permuted to rotate-half, KV head h / (n_heads/n_kv_heads)) and for
   alternative readings (no permutation, tiled KV heads, other w1/w2/w3
   orders, swapped same-shaped matrices), so a misreading would show as an
   alternative that does better.
3. The file's SHA-256 (llama2.c's published stories260K.bin is
   b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696,
   1,056,540 bytes, as pinned by third-party projects that download it).

Run:  /usr/bin/python3 tests/golden/stories260k_sanity.py [PATH]
"""

import hashlib
import itertools
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stories260k_reference as ref  # noqa: E402

PUBLISHED_SHA256 = "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696"


def layout(path):
    raw = open(path, "rb").read()
    dim, hid, L, nh, nkv, V, seq = struct.unpack("<7i", raw[:28])
    f = torch.frombuffer(bytearray(raw[28:]), dtype=torch.float32).double()
    hs, kvd = dim // nh, dim // nh * nkv
    segs = [("tok_emb", V * dim), ("rms_att", L * dim), ("wq", L * dim * dim),
            ("wk", L * kvd * dim), ("wv", L * kvd * dim), ("wo", L * dim * dim),
            ("rms_ffn", L * dim), ("w1", L * hid * dim), ("w2", L * dim * hid),
            ("w3", L * hid * dim), ("rms_final", dim), ("freq_cis_real", seq * hs // 2),
            ("freq_cis_imag", seq * hs // 2)]
    off = 0
    for name, n in segs:
        t = f[off:off + n]
        print(f"  {name:14s} {n:6d} floats  mean {t.mean():+.4f}  std {t.std():.4f}  "
              f"positive {(t > 0).double().mean():.3f}")
        if name == "freq_cis_real":
            inv = 10000.0 ** (-2 * torch.arange(hs // 2, dtype=torch.float64) / hs)
            want = torch.cos(torch.arange(seq, dtype=torch.float64)[:, None] * inv[None, :])
            print(f"  {'':14s} max |table - cos(pos*freq)| = "
                  f"{(t.view(seq, hs // 2) - want).abs().max():.2e}")
        off += n
    print(f"  {off} of {f.numel()} floats accounted for")
    print(f"  sha256 {hashlib.sha256(raw).hexdigest()}"
          f" ({'the published file' if hashlib.sha256(raw).hexdigest() == PUBLISHED_SHA256 else 'NOT the published file'})")


def forward(w, toks, tiled=False, pair=False):
    """stories260k_reference.forward, with the alternative readings."""
    T, hs, nh, nkv = len(toks), w["hs"], w["nh"], w["nkv"]
    x = w["emb"][torch.tensor(toks)]
    inv = 10000.0 ** (-2 * torch.arange(hs // 2, dtype=torch.float64) / hs)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]

    def rope(t):
        if pair:  # adjacent pairs on the loader's (permuted) rows: the unpermuted reading
            a, b = t[..., 0::2], t[..., 1::2]
            out = torch.empty_like(t)
            out[..., 0::2], out[..., 1::2] = a * ang.cos() - b * ang.sin(), a * ang.sin() + b * ang.cos()
            return out
        cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
        return t * cos + torch.cat([-t[..., hs // 2:], t[..., : hs // 2]], -1) * sin

    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(w["L"]):
        u = ref.rmsnorm(x, w["rms_att"][l])
        q = rope((u @ w["wq"][l].T).view(T, nh, hs).transpose(0, 1))
        k = rope((u @ w["wk"][l].T).view(T, nkv, hs).transpose(0, 1))
        v = (u @ w["wv"][l].T).view(T, nkv, hs).transpose(0, 1)
        rep = (lambda t: t.repeat(nh // nkv, 1, 1)) if tiled else \
            (lambda t: t.repeat_interleave(nh // nkv, 0))
        k, v = rep(k), rep(v)
        p = ((q @ k.transpose(-1, -2)) / math.sqrt(hs)).masked_fill(~causal, float("-inf"))
        x = x + (p.softmax(-1) @ v).transpose(0, 1).reshape(T, nh * hs) @ w["wo"][l].T
        u = ref.rmsnorm(x, w["rms_ffn"][l])
        x = x + (F.silu(u @ w["w1"][l].T) * (u @ w["w3"][l].T)) @ w["w2"][l].T
    return ref.rmsnorm(x, w["rms_final"]) @ w["emb"].T


def behaviour(w, samples=4, length=80, **kw):
    g = torch.Generator().manual_seed(1)
    ent, nbyte, n = [], 0, 0
    for _ in range(samples):
        toks = [1]
        for _ in range(length):
            lp = torch.log_softmax(forward(w, toks, **kw)[-1], -1)
            p = lp.exp()
            ent.append(float(-(p * lp).sum()))
            t = int(torch.multinomial(p, 1, generator=g))
            toks.append(t)
            nbyte += 3 <= t < 259
            n += 1
    greedy = [1]
    for _ in range(16):
        greedy.append(int(forward(w, greedy, **kw)[-1].argmax()))
    return sum(ent) / len(ent), nbyte / n, greedy


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else next(
        (c for c in ref.CANDIDATES if os.path.exists(c)), ref.CANDIDATES[0])
    print(f"{path}\n1. layout")
    layout(path)
    w = ref.load(path)
    L, hid, dim = w["L"], w["hid"], w["dim"]
    readings = [("loader's reading", w, {}), ("wq/wk not permuted", w, {"pair": True}),
                ("KV heads tiled", w, {"tiled": True})]
    ffn = [w["w1"].reshape(L, -1), w["w2"].reshape(L, -1), w["w3"].reshape(L, -1)]
    for perm in itertools.permutations(range(3)):
        if perm == (0, 1, 2):
            continue
        alt = dict(w, w1=ffn[perm[0]].view(L, hid, dim), w2=ffn[perm[1]].view(L, dim, hid),
                   w3=ffn[perm[2]].view(L, hid, dim))
        readings.append((f"w1,w2,w3 from segments {perm}", alt, {}))
    readings.append(("wq <-> wo", dict(w, wq=w["wo"], wo=w["wq"]), {}))
    print("2. behaviour at temperature 1 (a trained model: entropy near 1.30, byte ids ~0)")
    for name, ww, kw in readings:
        e, b, greedy = behaviour(ww, **kw)
        print(f"  {name:34s} entropy {e:.3f} nats  byte-fallback share {b:.3f}  greedy {greedy}",
              flush=True)


if __name__ == "__main__":
    main()
