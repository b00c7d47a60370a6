#!/usr/bin/python3
"""fit_vm_erff.py — the polynomial coefficients of vm_erff (vmath.h).

erf is split at |x| = 1:
  |x| <  1: erf(x) = x * P(x^2),                 P of degree 6
  |x| >= 1: erf(x) = 1 - exp(-x^2) * Q(1/|x|),   Q of degree 8, on [1, 4]
(erf rounds to 1 in float from |x| ~ 3.92, so vm_erff clamps |x| to 4.)
Each is a near-minimax fit of the RELATIVE error of P (resp. Q), found by
least squares on Chebyshev nodes with Lawson's reweighting, in double
(PyTorch's float64 least squares; Python's math.erf/erfc as reference).
Prints the coefficients, lowest degree first, and the fit's max relative
error; the float error of vm_erff itself is measured in tests/test_vmath.c.
"""
import math

import torch

torch.set_default_dtype(torch.float64)
NODES = 2000
LAWSON_ITERATIONS = 30


def fit(fn, lo, hi, degree, var):
    k = torch.arange(NODES)
    x = (lo + hi) / 2 + (hi - lo) / 2 * torch.cos(math.pi * (k + 0.5) / NODES)
    y = torch.tensor([fn(float(v)) for v in x])
    t = var(x)
    a = torch.stack([t**i for i in range(degree + 1)], 1)
    w = 1 / y.abs()
    lw = torch.ones(NODES)
    for _ in range(LAWSON_ITERATIONS):
        sw = (w * lw.sqrt())[:, None]
        c = torch.linalg.lstsq(a * sw, (y * sw[:, 0])[:, None]).solution[:, 0]
        e = (a @ c - y) * w
        lw = lw * e.abs()
        lw = lw / lw.sum()
    return c.tolist(), float(e.abs().max())


def main():
    p, ep = fit(lambda x: math.erf(x) / x if x else 2 / math.sqrt(math.pi), 0.0, 1.0, 6,
                lambda x: x * x)
    q, eq = fit(lambda x: math.erfc(x) * math.exp(x * x), 1.0, 4.0, 8, lambda x: 1 / x)
    print(f"/* P: max relative error {ep:.2e} */")
    print(", ".join(f"{v:.9e}f" for v in p))
    print(f"/* vm_erff adds x exactly and uses P's constant term minus 1: {p[0] - 1:.9e}f */")
    print(f"/* Q: max relative error {eq:.2e} */")
    print(", ".join(f"{v:.9e}f" for v in q))


if __name__ == "__main__":
    main()
