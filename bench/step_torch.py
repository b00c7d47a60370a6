#!/usr/bin/python3
"""step_torch.py — the PyTorch counterpart of bench/step.c: one optimizer
step of a BERT-base-shaped model, per fine-tuning method, timed the same way.

Why it is shaped so:
- Plain torch (no `transformers` here), HF BertForSequenceClassification
  semantics, dropout off, fp32: embeddings + LayerNorm, post-LN blocks with erf
  GELU, additive attention mask, tanh pooler on the first token, classifier,
  mean cross-entropy. Every encoder linear is adapted as the engine does:
      AFLoRA / ELoRA:  y = x W0^T + b0 + s_b * ((s_d * (x A^T)) B^T)
      LoRA:            y = x W0^T + b0 + (alpha/r) * (x A^T) B^T
  Frozen tensors have requires_grad False, so autograd skips their weight
  gradients exactly as the engine skips its frozen weight-gradient GEMMs.
- The step: optimizer.zero_grad(), forward, backward, clip_grad_norm_ over the
  trainable tensors, torch.optim.AdamW (torch 1.13 defaults: single-tensor
  loop, zero_grad without set_to_none) with the recipe of aflora.md section 5.
- Debian's torch links the system libblas, i.e. the same OpenBLAS 0.3.21 the
  engine calls, so both sides share the GEMM library; the differences are in
  everything around it. Threads: torch.set_num_threads plus
  OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set before torch is imported.
- Memory: CPU torch has no allocator statistics, so the figure is ru_maxrss,
  absolute and as the growth from just before the model is built. Run one
  method per process (bench/run.sh does) so methods do not share a
  high-water mark.

Output: a short table, then one JSON line (the same keys as step.c's where
they mean the same thing).
"""

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

BERT = dict(vocab=30522, hidden=768, layers=12, heads=12, intermediate=3072,
            max_position=512, type_vocab=2, ln_eps=1e-12)
BATCH, SEQ, LABELS, SEED = 8, 128, 2, 42
INIT_STD = 0.02                 # BERT's initializer_range
AFLORA_RANK, ELORA_RANK = 4, 1024
LORA_RANK, LORA_ALPHA = 8, 16.0
INIT_SD, INIT_SB = 0.1, 0.0     # aflora.md section 2
LR, HEAD_LR, WEIGHT_DECAY = 1e-2, 4e-2, 0.1
MAX_GRAD_NORM = 0.1
BETAS, EPS = (0.9, 0.999), 1e-8

MODULES = ("attention.self.query", "attention.self.key", "attention.self.value",
           "attention.output.dense", "intermediate.dense", "output.dense")
FFN_MODULES = ("intermediate.dense", "output.dense")

# name -> (method, rank, alpha, which projections train at first, freeze all A/B)
VARIANTS = {
    "aflora": ("aflora", AFLORA_RANK, 0.0, "ffn", False),
    "aflora-all": ("aflora", AFLORA_RANK, 0.0, "all", False),
    "aflora-frozen": ("aflora", AFLORA_RANK, 0.0, "ffn", True),
    "elora": ("elora", ELORA_RANK, 0.0, "none", False),
    "lora": ("lora", LORA_RANK, LORA_ALPHA, "all", False),
    "full": ("full", 0, 0.0, "none", False),
}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps after 1 warm-up")
    ap.add_argument("--threads", type=int, default=0, help="threads (0: all cores)")
    ap.add_argument("--method", choices=sorted(VARIANTS), default=None,
                    help="run one method only (default: all, in one process)")
    a = ap.parse_args()
    if a.steps < 1:
        ap.error("--steps must be >= 1")
    if a.threads <= 0:
        a.threads = os.cpu_count() or 1
    return a


ARGS = parse_args()
# Before torch loads: OpenBLAS and libgomp read these at start-up.
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def param(t, trainable):
    return torch.nn.Parameter(t, requires_grad=trainable)


class AdaptedLinear(torch.nn.Module):
    def __init__(self, out_f, in_f, method, rank, alpha, proj_trainable, gen):
        super().__init__()
        full = method == "full"
        self.weight = param(torch.randn(out_f, in_f, generator=gen) * INIT_STD, full)
        self.bias = param(torch.zeros(out_f), full)
        self.method = method
        if full:
            return
        lora = method == "lora"
        # AFLoRA/ELoRA: Kaiming-uniform bound sqrt(6/fan_in); LoRA: A bound
        # 1/sqrt(fan_in), B = 0 (as the engine initialises them).
        bound_a = 1 / math.sqrt(in_f) if lora else math.sqrt(6 / in_f)
        bound_b = math.sqrt(6 / rank)
        self.A = param(torch.empty(rank, in_f).uniform_(-bound_a, bound_a, generator=gen),
                       proj_trainable)
        b = torch.zeros(out_f, rank) if lora else \
            torch.empty(out_f, rank).uniform_(-bound_b, bound_b, generator=gen)
        self.B = param(b, proj_trainable)
        if lora:
            self.scale = alpha / rank
        else:
            self.s_d = param(torch.full((rank,), INIT_SD), True)
            self.s_b = param(torch.full((out_f,), INIT_SB), True)

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        if self.method == "full":
            return y
        h1 = F.linear(x, self.A)
        if self.method == "lora":
            return y + self.scale * F.linear(h1, self.B)
        return y + self.s_b * F.linear(self.s_d * h1, self.B)


class Layer(torch.nn.Module):
    def __init__(self, variant, gen):
        super().__init__()
        method, rank, alpha, proj, _ = variant
        h, i = BERT["hidden"], BERT["intermediate"]
        dims = {"attention.self.query": (h, h), "attention.self.key": (h, h),
                "attention.self.value": (h, h), "attention.output.dense": (h, h),
                "intermediate.dense": (i, h), "output.dense": (h, i)}
        self.lin = torch.nn.ModuleDict()
        for name in MODULES:
            trains = proj == "all" or (proj == "ffn" and name in FFN_MODULES)
            self.lin[name.replace(".", "_")] = AdaptedLinear(*dims[name], method, rank, alpha,
                                                             trains, gen)
        full = method == "full"
        self.ln1_w, self.ln1_b = param(torch.ones(h), full), param(torch.zeros(h), full)
        self.ln2_w, self.ln2_b = param(torch.ones(h), full), param(torch.zeros(h), full)

    def forward(self, x, ext_mask):
        bsz, seq, h = x.shape
        nh = BERT["heads"]
        hd = h // nh
        lin = self.lin

        def heads(t):
            return t.view(bsz, seq, nh, hd).transpose(1, 2)

        q = heads(lin["attention_self_query"](x))
        k = heads(lin["attention_self_key"](x))
        v = heads(lin["attention_self_value"](x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd) + ext_mask
        probs = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(bsz, seq, h)
        h1 = F.layer_norm(lin["attention_output_dense"](ctx) + x, (h,), self.ln1_w, self.ln1_b,
                          BERT["ln_eps"])
        inter = F.gelu(lin["intermediate_dense"](h1))
        return F.layer_norm(lin["output_dense"](inter) + h1, (h,), self.ln2_w, self.ln2_b,
                            BERT["ln_eps"])


class Bert(torch.nn.Module):
    def __init__(self, variant, gen):
        super().__init__()
        full = variant[0] == "full"
        h = BERT["hidden"]

        def emb(rows):
            return param(torch.randn(rows, h, generator=gen) * INIT_STD, full)

        self.word_emb = emb(BERT["vocab"])
        self.pos_emb = emb(BERT["max_position"])
        self.type_emb = emb(BERT["type_vocab"])
        self.emb_ln_w, self.emb_ln_b = param(torch.ones(h), full), param(torch.zeros(h), full)
        self.layers = torch.nn.ModuleList(Layer(variant, gen) for _ in range(BERT["layers"]))
        self.pool_w = param(torch.randn(h, h, generator=gen) * INIT_STD, True)
        self.pool_b = param(torch.zeros(h), True)
        self.cls_w = param(torch.randn(LABELS, h, generator=gen) * INIT_STD, True)
        self.cls_b = param(torch.zeros(LABELS), True)

    def forward(self, ids, types, mask, labels):
        seq = ids.shape[1]
        x = self.word_emb[ids] + self.pos_emb[:seq].unsqueeze(0) + self.type_emb[types]
        x = F.layer_norm(x, (x.shape[-1],), self.emb_ln_w, self.emb_ln_b, BERT["ln_eps"])
        # HF's extended mask: 0 for real tokens, finfo.min for padding.
        ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in self.layers:
            x = layer(x, ext)
        pooled = torch.tanh(F.linear(x[:, 0], self.pool_w, self.pool_b))
        logits = F.linear(pooled, self.cls_w, self.cls_b)
        return F.cross_entropy(logits, labels)


def param_groups(model):
    """Adapter/base lr vs head lr; no weight decay on biases and LayerNorm (as the trainer)."""
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = name.startswith(("pool_", "cls_"))
        no_decay = name.endswith(("bias", "_b", "ln1_w", "ln2_w", "emb_ln_w")) and \
            not name.endswith("s_b")
        key = (head, no_decay)
        groups.setdefault(key, []).append(p)
    return [{"params": ps, "lr": HEAD_LR if head else LR,
             "weight_decay": 0.0 if nd else WEIGHT_DECAY} for (head, nd), ps in groups.items()]


def run_variant(name, steps):
    variant = VARIANTS[name]
    rss_before = maxrss_mb()
    gen = torch.Generator().manual_seed(SEED)
    model = Bert(variant, gen)
    if variant[4]:  # after freezing: every A and B stops training
        for n, p in model.named_parameters():
            if n.endswith(".A") or n.endswith(".B"):
                p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(model), lr=LR, betas=BETAS, eps=EPS)
    ids = torch.randint(0, BERT["vocab"], (BATCH, SEQ), generator=gen)
    types = torch.zeros(BATCH, SEQ, dtype=torch.long)
    mask = torch.ones(BATCH, SEQ, dtype=torch.long)
    labels = torch.randint(0, LABELS, (BATCH,), generator=gen)

    times, first_loss, loss = [], None, None
    for s in range(steps + 1):  # step 0 is the warm-up
        c0 = time.process_time()
        t0 = time.perf_counter()
        opt.zero_grad()
        t1 = time.perf_counter()
        loss = model(ids, types, mask, labels)
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
        times.append(dict(total=ms(t0, t4), zero=ms(t0, t1), fwd=ms(t1, t2), bwd=ms(t2, t3),
                          opt=ms(t3, t4), cpu=ms(c0, c4)))
    ordered = sorted(times, key=lambda t: t["total"])
    med = ordered[(len(ordered) - 1) // 2]  # lower middle: a step that happened
    rss_after = maxrss_mb()
    return {
        "name": name,
        "trainable_params": sum(p.numel() for p in trainable),
        "trainable_tensors": len(trainable),
        "first_loss": first_loss,
        "loss": loss.item(),
        "step_ms": [round(t["total"], 3) for t in times],
        "cpu_ms": [round(t["cpu"], 3) for t in times],
        "median_ms": med["total"], "median_step_cpu_ms": med["cpu"], "zero_grad_ms": med["zero"], "forward_ms": med["fwd"],
        "backward_ms": med["bwd"], "optimizer_ms": med["opt"],
        "median_of_totals_ms": statistics.median(t["total"] for t in times),
        "maxrss_mb": rss_after, "maxrss_delta_mb": rss_after - rss_before,
    }


def main():
    torch.set_num_threads(ARGS.threads)
    torch.set_grad_enabled(True)
    names = [ARGS.method] if ARGS.method else list(VARIANTS)
    print(f"BERT-base training step (PyTorch {torch.__version__}): batch {BATCH} x seq {SEQ}, "
          f"{ARGS.steps} timed steps after 1 warm-up, {torch.get_num_threads()} threads, "
          f"dropout off", flush=True)
    results = []
    for n in names:
        print(f"running {n} ...", flush=True)
        results.append(run_variant(n, ARGS.steps))
    print(f"\n{'method':<14} {'trainable':>10} {'step_ms':>9} {'cpu_ms':>9} {'fwd_ms':>9} {'bwd_ms':>9} "
          f"{'opt_ms':>9} {'rssMB':>8} {'rssΔMB':>8}")
    for r in results:
        print(f"{r['name']:<14} {r['trainable_params']:>10} {r['median_ms']:>9.1f} "
              f"{r['median_step_cpu_ms']:>9.1f} "
              f"{r['forward_ms']:>9.1f} {r['backward_ms']:>9.1f} {r['optimizer_ms']:>9.1f} "
              f"{r['maxrss_mb']:>8.1f} {r['maxrss_delta_mb']:>8.1f}")
    print(json.dumps({"bench": "step", "side": "torch", "torch": torch.__version__,
                      "batch": BATCH, "seq": SEQ, "steps": ARGS.steps, "dropout": False,
                      "threads": torch.get_num_threads(), "methods": results},
                     separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
