#!/usr/bin/python3
"""Sanity check for the golden fixtures: re-read them with a hand-written reader.

For each file given (default: every tests/golden/*.safetensors) it
- parses the safetensors layout independently of the writer (8-byte LE header
  length, JSON header, F32 data) and checks it: header length a multiple of 8,
  offsets contiguous from 0 to the end of the file, byte size == 4 * numel;
- prints the metadata and every tensor's name, shape and L2 norm, and flags
  any gradient that is all zeros (that would make a C comparison vacuous);
- with --verify, rebuilds the model from the file's own tensors, reruns the
  float64 reference forward/backward (gen_golden.forward) and checks the
  stored logits, loss and gradients against it. This catches writer bugs
  (names, shapes, ordering, byte order) that a round trip through the same
  code would hide.

Usage: /usr/bin/python3 tests/golden/check_golden.py [--verify] [file ...]
"""

import glob
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER_LEN_BYTES = 8
F32_BYTES = 4
# Stored values are float32 roundings of float64 results; recomputing from the
# float32-stored inputs lands within a few float32 ulps of them.
VERIFY_RTOL = 1e-5
VERIFY_ATOL = 1e-6


def read_safetensors(path):
    """Return (metadata dict, {name: (shape, [floats])}) in header order."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < HEADER_LEN_BYTES:
        raise ValueError(f"{path}: shorter than the header length field")
    (hlen,) = struct.unpack("<Q", raw[:HEADER_LEN_BYTES])
    if hlen % 8 != 0:
        raise ValueError(f"{path}: header length {hlen} not a multiple of 8")
    if HEADER_LEN_BYTES + hlen > len(raw):
        raise ValueError(f"{path}: header runs past end of file")
    header = json.loads(raw[HEADER_LEN_BYTES:HEADER_LEN_BYTES + hlen].decode("utf-8"))
    data = raw[HEADER_LEN_BYTES + hlen:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    spans = []
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} has dtype {info['dtype']}")
        shape = info["shape"]
        b, e = info["data_offsets"]
        numel = 1
        for d in shape:
            numel *= d
        if e - b != numel * F32_BYTES:
            raise ValueError(f"{path}: {name} spans {e - b} bytes for shape {shape}")
        spans.append((b, e, name))
        tensors[name] = (shape, list(struct.unpack("<%df" % numel, data[b:e])))
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            raise ValueError(f"{path}: {name} starts at {b}, expected {pos} (gap/overlap)")
        pos = e
    if pos != len(data):
        raise ValueError(f"{path}: data ends at {pos}, file data is {len(data)} bytes")
    return meta, tensors


def describe(path):
    meta, tensors = read_safetensors(path)
    print(f"== {os.path.relpath(path)}  ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")
    for k, v in meta.items():
        if k == "config":
            print(f"  meta config = {json.dumps(json.loads(v), sort_keys=True)}")
        else:
            print(f"  meta {k} = {v}")
    zero_grads = []
    for name, (shape, vals) in tensors.items():
        norm = math.sqrt(sum(x * x for x in vals))
        print(f"  {name:55s} {str(shape):10s} |x|={norm:.6g}")
        if name.startswith("grad.") and norm == 0.0:
            zero_grads.append(name)
    if zero_grads:
        print(f"  WARNING: all-zero gradients: {zero_grads}")
    return meta, tensors, zero_grads


def verify(path, meta, tensors):
    """Rerun the reference from the file's tensors; return number of mismatches."""
    import torch
    sys.path.insert(0, HERE)
    import gen_golden as G

    def t(name):
        shape, vals = tensors[name]
        return torch.tensor(vals, dtype=G.DTYPE).reshape(shape)

    cfg = json.loads(meta["config"])
    spec = {"method": meta["method"], "rank": int(meta["rank"]),
            "alpha": float(meta["alpha"]), "num_labels": int(meta["num_labels"])}
    inputs = {k: t("in." + k).long() for k in ("input_ids", "token_type_ids", "attention_mask")}
    inputs["labels"] = t("in.labels")
    if spec["num_labels"] > 1:
        inputs["labels"] = inputs["labels"].long()
    params = {n: t(n) for n in tensors if not n.startswith(("in.", "out.", "grad."))}
    train = [n[len("grad."):] for n in tensors if n.startswith("grad.")]
    for n in train:
        params[n].requires_grad_(True)
    logits, loss = G.forward(params, inputs, cfg, spec)
    grads = torch.autograd.grad(loss, [params[n] for n in train])

    bad = 0
    checks = [("out.logits", logits.detach()), ("out.loss", loss.detach().reshape(1))]
    checks += [("grad." + n, g) for n, g in zip(train, grads)]
    for name, ref in checks:
        got = t(name)
        if list(got.shape) != list(ref.shape) or not torch.allclose(
                got, ref, rtol=VERIFY_RTOL, atol=VERIFY_ATOL):
            print(f"  MISMATCH {name}: max |diff| = {(got - ref).abs().max().item():.3g}")
            bad += 1
    print(f"  verify: {len(checks)} outputs/gradients recomputed, {bad} mismatches")
    return bad


def main(argv):
    do_verify = "--verify" in argv
    files = [a for a in argv if a != "--verify"]
    if not files:
        files = sorted(glob.glob(os.path.join(HERE, "*.safetensors")))
    failures = 0
    for path in files:
        meta, tensors, zero_grads = describe(path)
        failures += len(zero_grads)
        if do_verify:
            failures += verify(path, meta, tensors)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
