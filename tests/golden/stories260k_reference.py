#!/usr/bin/python3
"""float64 PyTorch run of the stories260K llama2.c checkpoint, in Hugging
Face's formulation, for tests/test_llama2c.c.

Reads ../shared/data/stories260K/stories260K.bin (or the path given as the
first argument; the .bin is never committed), permutes the rows of wq and wk
per head from llama2.c's adjacent-pair RoPE order to transformers'
rotate-half order (HF row s*(d/2)+j <- llama2.c row 2j+s, as transformers'
conversion script does), and runs a LLaMA forward written from the formulas
(RMSNorm eps 1e-5, rotate-half RoPE theta 10000, grouped-query attention,
SwiGLU, tied classifier). Writes tests/golden/stories260k_reference.json:
the greedy continuation of BOS (id 1), the mean next-token cross-entropy of
that sequence and the logits of its last position. The C test checks the
engine's loader and forward against these numbers.

Regenerate with:  /usr/bin/python3 tests/golden/stories260k_reference.py [PATH]
"""

import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
# the shared data folder beside the checkout (/work/main) or a worktree (/work/wt/NAME)
CANDIDATES = [os.path.join(HERE, *[".."] * up, "shared", "data", "stories260K", "stories260K.bin")
              for up in (3, 4)]
STEPS = 24
BOS = 1


def load(path):
    raw = open(path, "rb").read()
    dim, hid, L, nh, nkv, V, seq = struct.unpack("<7i", raw[:28])
    assert V > 0, "stories260K shares its classifier"
    f = torch.frombuffer(bytearray(raw[28:]), dtype=torch.float32).to(torch.float64)
    hs = dim // nh
    off = [0]

    def take(*shape):
        n = math.prod(shape)
        t = f[off[0]: off[0] + n].view(*shape)
        off[0] += n
        return t

    w = {"dim": dim, "hid": hid, "L": L, "nh": nh, "nkv": nkv, "V": V, "hs": hs}
    w["emb"] = take(V, dim)
    w["rms_att"] = take(L, dim)
    w["wq"] = take(L, nh * hs, dim)
    w["wk"] = take(L, nkv * hs, dim)
    w["wv"] = take(L, nkv * hs, dim)
    w["wo"] = take(L, dim, nh * hs)
    w["rms_ffn"] = take(L, dim)
    w["w1"] = take(L, hid, dim)
    w["w2"] = take(L, dim, hid)
    w["w3"] = take(L, hid, dim)
    w["rms_final"] = take(dim)
    off[0] += seq * hs  # the two legacy RoPE tables
    assert off[0] == f.numel(), "file size does not match its header"
    # adjacent pairs -> rotate-half: within each head, new row s*(hs/2)+j = old row 2j+s
    perm = torch.tensor([2 * j + s for s in range(2) for j in range(hs // 2)])

    def permute(m, heads):
        return m.view(L, heads, hs, dim)[:, :, perm, :].reshape(L, heads * hs, dim)

    w["wq"], w["wk"] = permute(w["wq"], nh), permute(w["wk"], nkv)
    return w


def rmsnorm(x, wt):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * wt


def forward(w, toks):
    T, hs, nh, nkv = len(toks), w["hs"], w["nh"], w["nkv"]
    x = w["emb"][torch.tensor(toks)]
    inv = 10000.0 ** (-2 * torch.arange(hs // 2, dtype=torch.float64) / hs)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(t):  # [heads, T, hs]
        rot = torch.cat([-t[..., hs // 2:], t[..., : hs // 2]], -1)
        return t * cos + rot * sin

    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(w["L"]):
        u = rmsnorm(x, w["rms_att"][l])
        q = rope((u @ w["wq"][l].T).view(T, nh, hs).transpose(0, 1))
        k = rope((u @ w["wk"][l].T).view(T, nkv, hs).transpose(0, 1))
        v = (u @ w["wv"][l].T).view(T, nkv, hs).transpose(0, 1)
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        p = s.masked_fill(~causal, float("-inf")).softmax(-1)
        x = x + (p @ v).transpose(0, 1).reshape(T, nh * hs) @ w["wo"][l].T
        u = rmsnorm(x, w["rms_ffn"][l])
        x = x + (F.silu(u @ w["w1"][l].T) * (u @ w["w3"][l].T)) @ w["w2"][l].T
    return rmsnorm(x, w["rms_final"]) @ w["emb"].T


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else next(
        (c for c in CANDIDATES if os.path.exists(c)), CANDIDATES[0])
    w = load(path)
    toks = [BOS]
    for _ in range(STEPS):
        toks.append(int(forward(w, toks)[-1].argmax()))
    logits = forward(w, toks)
    loss = F.cross_entropy(logits[:-1], torch.tensor(toks[1:]))
    out = {"source": "stories260K.bin (llama2.c), float64 PyTorch, HF rotate-half formulation",
           "greedy_ids": toks, "loss": loss.item(),
           "logits_last": [round(v, 9) for v in logits[-1].tolist()]}
    dst = os.path.join(HERE, "stories260k_reference.json")
    with open(dst, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(f"{dst}: loss {loss.item():.6f}, ids {toks}")


if __name__ == "__main__":
    main()
