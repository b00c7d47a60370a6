#!/usr/bin/python3
"""Golden values for tests/test_optim.c: parameters after 3 torch.optim.AdamW
steps on a fixed 5-element tensor with fixed gradients.

Run with /usr/bin/python3 (torch 1.13). It prints C initialisers; paste them
into test_optim.c (the expected_* arrays) if the case below changes.
"""
import torch

P0 = [0.5, -1.25, 2.0, 0.0, 3e-3]
GRADS = [
    [0.1, -0.2, 0.0, 1e-7, -3.0],
    [-0.05, 0.3, 0.0, 2e-7, 2.5],
    [0.2, 0.1, 0.0, -1e-7, -1.0],
]
CASES = {
    # name: (learning rate per step, weight decay, betas, eps)
    "wd": ([1e-2, 2e-2, 5e-3], 0.1, (0.9, 0.999), 1e-6),
    "nowd": ([1e-2, 1e-2, 1e-2], 0.0, (0.85, 0.95), 1e-8),
}


def run(lrs, wd, betas, eps):
    p = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float32))
    opt = torch.optim.AdamW([p], lr=lrs[0], betas=betas, eps=eps, weight_decay=wd,
                            foreach=False)
    for lr, g in zip(lrs, GRADS):
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
    return p.detach().tolist()


def main():
    print(f"/* torch {torch.__version__} */")
    for name, (lrs, wd, betas, eps) in CASES.items():
        vals = run(lrs, wd, betas, eps)
        body = ", ".join(f"{v:.9e}f" for v in vals)
        print(f"static const float expected_{name}[5] = {{{body}}};")


if __name__ == "__main__":
    main()
