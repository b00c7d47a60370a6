#!/usr/bin/python3
"""llama_step_torch.py — the PyTorch twin of bench/llama_step.c: one AFLoRA
optimizer step of a TinyLlama-1.1B-shaped model on one sequence of 256
tokens, timed the same way.

Why it is shaped so:
- Plain torch 1.13 (no `transformers` here), LlamaForCausalLM semantics in
  float32: RMSNorm, rotate-half RoPE (theta 10000) on positions 0..S-1,
  grouped-query causal attention (32 heads, 4 KV heads; KV repeated per
  group, eager softmax — torch 1.13 has no scaled_dot_product_attention),
  SwiGLU MLP, final RMSNorm, untied lm_head, mean next-token cross-entropy
  over the 32000-token vocabulary (logits for position t against token t+1).
- Base weights: uniform of std 0.02 rounded to bf16 and widened back to
  float32 (what llama_step.c holds), norms 1; every base tensor frozen.
- AFLoRA r=32 on q, k, v, up and down (the engine's defaults for LLaMA):
      y = x W0^T + s_b * ((s_d * (x A^T)) B^T)
  A, B trainable on up and down (trainable_projections ffn), frozen on q, k,
  v; s_d and s_b trainable everywhere; init as the engine (A, B Kaiming
  uniform, s_d 0.1, s_b 0). Frozen tensors have requires_grad False, so
  autograd skips their weight gradients as the engine does.
- The step: zero_grad, forward, backward, clip_grad_norm_ (0.1), AdamW (lr
  1e-2, weight decay 0.1) — the trainer's defaults, as llama_step.c.
- Threads: torch.set_num_threads plus OPENBLAS_NUM_THREADS / OMP_NUM_THREADS
  before torch loads. Debian's torch calls the system OpenBLAS for its GEMMs,
  the same library the engine calls, so OPENBLAS_CORETYPE applies to both.
- The sgemm rate is measured in this process after the step (torch.mm on
  the shapes llama_step.c times), so "% of sgemm" compares like with like.
- Memory: ru_maxrss, absolute and as growth from just before the model is
  built (CPU torch has no allocator statistics).

Output: a short report, then one JSON line (bench/llama.sh reads it).
"""

import argparse
import json
import math
import os
import resource
import sys
import time

CFG = dict(vocab=32000, hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4,
           rms_eps=1e-5, rope_theta=10000.0)
BATCH, SEQ, RANK, SEED = 1, 256, 32, 42
INIT_STD = 0.02
INIT_SD, INIT_SB = 0.1, 0.0
LR, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-2, 0.1, 0.1
BETAS, EPS = (0.9, 0.999), 1e-8
TARGETS = ("q", "k", "v", "up", "down")
TRAIN_PROJ = ("up", "down")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps after 1 warm-up")
    ap.add_argument("--layers", type=int, default=CFG["layers"], help="decoder layers")
    ap.add_argument("--threads", type=int, default=0, help="threads (0: all cores)")
    a = ap.parse_args()
    if a.steps < 1 or a.layers < 1:
        ap.error("--steps and --layers must be >= 1")
    if a.threads <= 0:
        a.threads = os.cpu_count() or 1
    return a


ARGS = parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def frozen_weight(rows, cols, gen):
    """Uniform with std INIT_STD, rounded to bf16, kept as float32."""
    half = INIT_STD * math.sqrt(3.0)
    w = torch.empty(rows, cols).uniform_(-half, half, generator=gen)
    return torch.nn.Parameter(w.to(torch.bfloat16).to(torch.float32), requires_grad=False)


class Linear(torch.nn.Module):
    """A frozen linear layer, with an AFLoRA adapter when targeted."""

    def __init__(self, out_f, in_f, adapted, proj_trainable, gen):
        super().__init__()
        self.weight = frozen_weight(out_f, in_f, gen)
        self.adapted = adapted
        if not adapted:
            return
        ba, bb = math.sqrt(6 / in_f), math.sqrt(6 / RANK)
        self.A = torch.nn.Parameter(torch.empty(RANK, in_f).uniform_(-ba, ba, generator=gen),
                                    requires_grad=proj_trainable)
        self.B = torch.nn.Parameter(torch.empty(out_f, RANK).uniform_(-bb, bb, generator=gen),
                                    requires_grad=proj_trainable)
        self.s_d = torch.nn.Parameter(torch.full((RANK,), INIT_SD))
        self.s_b = torch.nn.Parameter(torch.full((out_f,), INIT_SB))

    def forward(self, x):
        y = F.linear(x, self.weight)
        if not self.adapted:
            return y
        return y + self.s_b * F.linear(self.s_d * F.linear(x, self.A), self.B)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(torch.nn.Module):
    def __init__(self, gen):
        super().__init__()
        H, I = CFG["hidden"], CFG["intermediate"]
        hd = H // CFG["heads"]
        kvd = CFG["kv_heads"] * hd
        dims = {"q": (H, H), "k": (kvd, H), "v": (kvd, H), "o": (H, H),
                "gate": (I, H), "up": (I, H), "down": (H, I)}
        self.lin = torch.nn.ModuleDict({
            n: Linear(*dims[n], n in TARGETS, n in TRAIN_PROJ, gen) for n in dims})
        self.ln1 = torch.nn.Parameter(torch.ones(H), requires_grad=False)
        self.ln2 = torch.nn.Parameter(torch.ones(H), requires_grad=False)

    def forward(self, x, cos, sin, causal):
        bsz, seq, H = x.shape
        nh, nkv = CFG["heads"], CFG["kv_heads"]
        hd = H // nh
        lin = self.lin
        xn = rms_norm(x, self.ln1, CFG["rms_eps"])
        q = lin["q"](xn).view(bsz, seq, nh, hd).transpose(1, 2)
        k = lin["k"](xn).view(bsz, seq, nkv, hd).transpose(1, 2)
        v = lin["v"](xn).view(bsz, seq, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd) + causal
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        h = x + lin["o"](ctx.transpose(1, 2).reshape(bsz, seq, H))
        xn2 = rms_norm(h, self.ln2, CFG["rms_eps"])
        return h + lin["down"](F.silu(lin["gate"](xn2)) * lin["up"](xn2))


class Llama(torch.nn.Module):
    def __init__(self, layers, gen):
        super().__init__()
        V, H = CFG["vocab"], CFG["hidden"]
        self.embed = frozen_weight(V, H, gen)
        self.blocks = torch.nn.ModuleList(Block(gen) for _ in range(layers))
        self.norm = torch.nn.Parameter(torch.ones(H), requires_grad=False)
        self.lm_head = frozen_weight(V, H, gen)
        hd = H // CFG["heads"]
        inv_freq = 1.0 / (CFG["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = torch.outer(torch.arange(SEQ, dtype=torch.float64), inv_freq)
        ang = torch.cat((ang, ang), dim=-1)
        self.cos, self.sin = ang.cos().float(), ang.sin().float()
        self.causal = torch.full((SEQ, SEQ), float("-inf")).triu(1)

    def forward(self, ids):
        x = F.embedding(ids, self.embed)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.causal)
        logits = F.linear(rms_norm(x, self.norm, CFG["rms_eps"]), self.lm_head)
        return F.cross_entropy(logits[:, :-1].reshape(-1, CFG["vocab"]), ids[:, 1:].reshape(-1))


def sgemm_rate(M, N, K, trans_b, reps):
    """Best GFLOP/s of torch.mm on M x K times (K x N or its transposed N x K)."""
    a = torch.rand(M, K) * 2 - 1
    b = torch.rand(N, K) * 2 - 1 if trans_b else torch.rand(K, N) * 2 - 1
    best = 0.0
    for rep in range(reps + 1):
        t0 = time.perf_counter()
        torch.mm(a, b.t() if trans_b else b)
        gf = 2.0 * M * N * K / ((time.perf_counter() - t0) * 1e9)
        if rep > 0:
            best = max(best, gf)
    return best


def main():
    torch.set_num_threads(ARGS.threads)
    print(f"TinyLlama-1.1B-shaped training step, PyTorch {torch.__version__} ({ARGS.layers} "
          f"layers): batch {BATCH} x seq {SEQ}, AFLoRA r={RANK} on q,k,v,up,down, {ARGS.steps} "
          f"timed steps after 1 warm-up, {torch.get_num_threads()} threads", flush=True)
    rss_before = maxrss_mb()
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.perf_counter()
    model = Llama(ARGS.layers, gen)
    fill_ms = (time.perf_counter() - t0) * 1e3
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    opt = torch.optim.AdamW(trainable, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    ids = torch.randint(0, CFG["vocab"], (BATCH, SEQ), generator=gen)

    times, first_loss, loss = [], None, None
    for s in range(ARGS.steps + 1):  # step 0 is the warm-up
        c0 = time.process_time()
        t0 = time.perf_counter()
        opt.zero_grad()
        t1 = time.perf_counter()
        loss = model(ids)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
        opt.step()
        t4 = time.perf_counter()
        c4 = time.process_time()
        if s == 0:
            first_loss = loss.item()
            continue
        ms = lambda a, b: (b - a) * 1e3  # noqa: E731
        times.append(dict(total=ms(t0, t4), fwd=ms(t1, t2), bwd=ms(t2, t3), opt=ms(t3, t4),
                          cpu=ms(c0, c4)))
    med = sorted(times, key=lambda t: t["total"])[(len(times) - 1) // 2]
    rss_after = maxrss_mb()
    del model, opt, trainable
    cube = sgemm_rate(2048, 2048, 2048, False, 3)
    proj = sgemm_rate(BATCH * SEQ, CFG["intermediate"], CFG["hidden"], True, 5)
    best = max(cube, proj)
    print(f"\nstep {med['total']:.0f} ms (forward {med['fwd']:.0f}, backward {med['bwd']:.0f}, "
          f"clip+AdamW {med['opt']:.1f}; CPU {med['cpu']:.0f} ms); sgemm rate {best:.1f} "
          f"(cube {cube:.1f}, projection {proj:.1f})")
    print(f"loss {first_loss:.4f} at the warm-up step, {loss.item():.4f} at the last; "
          f"{n_trainable} trainable; model built in {fill_ms:.0f} ms")
    print(f"memory: peak RSS {rss_after:.0f} MiB, grew {rss_after - rss_before:.0f} MiB")
    print(json.dumps({
        "bench": "llama_step", "side": "torch", "torch": torch.__version__,
        "layers": ARGS.layers, "batch": BATCH, "seq": SEQ, "rank": RANK, "steps": ARGS.steps,
        "threads": torch.get_num_threads(),
        "sgemm_gflops": {"cube": cube, "proj": proj, "best": best},
        "step_ms": [round(t["total"], 3) for t in times], "median_ms": med["total"],
        "forward_ms": med["fwd"], "backward_ms": med["bwd"], "optimizer_ms": med["opt"],
        "cpu_ms": med["cpu"], "first_loss": first_loss, "loss": loss.item(),
        "trainable_params": n_trainable,
        "maxrss_mb": rss_after, "maxrss_delta_mb": rss_after - rss_before,
    }, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
