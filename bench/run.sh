#!/usr/bin/env bash
# run.sh — the training-step benchmark, C engine against PyTorch, side by side.
#
# Builds bench/step (make bench), then for each method runs the C side and
# the PyTorch side (bench/step_torch.py), each in its own fresh process so
# ru_maxrss is that method's alone, alternating C and torch so that load from
# other work drifts over both alike. Raw outputs go to build/bench/results/;
# the last line of each is a JSON record, which the summary below reads.
#
# OpenBLAS core: OpenBLAS 0.3.21 (Debian 12) does not know recent Xeons
# (e.g. family 6 model 207) and its DYNAMIC_ARCH build falls back to the
# "Prescott" SSE3 kernels, about 5x slower sgemm. With --coretype auto (the
# default) and OPENBLAS_CORETYPE unset, this script asks OpenBLAS which core
# it picked and, if that is the Prescott fallback on a CPU with AVX-512 (or
# AVX2), sets OPENBLAS_CORETYPE=SkylakeX (or Haswell) for both sides and says
# so. --coretype default leaves OpenBLAS to its own choice; --coretype NAME
# forces NAME.
#
# --baseline BUILD also runs BUILD/bench/step (an older build of the engine,
# e.g. a checkout of an earlier commit built with make bench) before each
# method's C run, and prints the before/after ratios measured in this run.
#
# usage: bench/run.sh [--steps N] [--threads N] [--methods a,b,...] [--coretype auto|default|NAME]
#                     [--baseline BUILD]
set -euo pipefail
cd "$(dirname "$0")/.."

steps=3
threads=$(nproc)
methods=aflora,aflora-all,aflora-frozen,elora,lora,full
coretype=auto
baseline=
py=/usr/bin/python3
while (($#)); do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --coretype) coretype=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

make --no-print-directory bench >/dev/null

source bench/blas_core.sh
bench_blas_core "$coretype" "$py"

# Idle OpenMP threads must sleep, not spin against OpenBLAS's threads (the
# aflorad binary sets this itself; the bench program is run directly).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

out=build/bench/results
mkdir -p "$out"
rm -f "$out"/*.txt
echo "step benchmark: steps=$steps threads=$threads methods=$methods" \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset, detected $detected>}" \
     "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-<unset>} load: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$SECONDS
IFS=, read -ra list <<<"$methods"
for m in "${list[@]}"; do
  if [[ -n $baseline ]]; then
    "$baseline/bench/step" --method "$m" --steps "$steps" --threads "$threads" >"$out/b-$m.txt"
  fi
  t0=$SECONDS
  build/bench/step --method "$m" --steps "$steps" --threads "$threads" >"$out/c-$m.txt"
  t1=$SECONDS
  "$py" bench/step_torch.py --method "$m" --steps "$steps" --threads "$threads" >"$out/torch-$m.txt"
  echo "  $m: C $((t1 - t0)) s, torch $((SECONDS - t1)) s (wall, including set-up)"
done
echo "total $((SECONDS - start)) s; load now: $(cut -d' ' -f1-3 /proc/loadavg)"

"$py" - "$out" "${list[@]}" <<'EOF'
import json, sys

out, names = sys.argv[1], sys.argv[2:]

def last_json(path):
    with open(path) as f:
        return json.loads([l for l in f if l.startswith("{")][-1])

c, t, peak = {}, {}, {}
for n in names:
    cj, tj = last_json(f"{out}/c-{n}.txt"), last_json(f"{out}/torch-{n}.txt")
    c[n], t[n] = cj["methods"][0], tj["methods"][0]
    peak[n] = cj["sgemm_peak_gflops"]["best"]
    info = cj

print(f"\nmachine: {info['nproc']} cores, {info['cpu']}; {info['openblas']}; "
      f"threads {info['threads']}; batch {info['batch']} x seq {info['seq']}; "
      f"median of {info['steps']} steps after 1 warm-up; dropout off")
hdr = (f"{'method':<14} {'trainable':>10} {'C ms':>9} {'torch ms':>9} {'speedup':>7} "
       f"{'C MB':>7} {'torch MB':>8} {'C GFLOP':>8} {'C GFLOP/s':>9} {'%peak':>6} {'peak':>6}")
print(hdr)
print("-" * len(hdr))
for n in names:
    a, b = c[n], t[n]
    print(f"{n:<14} {a['trainable_params']:>10} {a['median_ms']:>9.0f} {b['median_ms']:>9.0f} "
          f"{b['median_ms'] / a['median_ms']:>6.2f}x {a['maxrss_mb']:>7.0f} {b['maxrss_mb']:>8.0f} "
          f"{a['flops']['total'] / 1e9:>8.1f} {a['gflops_per_s']:>9.1f} "
          f"{a['pct_of_sgemm_peak']:>5.1f}% {peak[n]:>6.1f}")
print("C ms / torch ms: median step; MB: ru_maxrss of a fresh process per method; "
      "peak: sgemm GFLOP/s measured in that C process")
print("\nC step breakdown (ms: zero_grad / forward / backward / clip+AdamW; process CPU ms "
      "of that step) and FLOPs (GFLOP: forward / backward-input / backward-weight):")
for n in names:
    a, f = c[n], c[n]["flops"]
    mem = a["memory_bytes"]
    print(f"  {n:<14} {a['zero_grad_ms']:7.1f} {a['forward_ms']:8.0f} {a['backward_ms']:8.0f} "
          f"{a['optimizer_ms']:7.1f}  cpu {a['median_step_cpu_ms']:6.0f}   "
          f"{f['forward'] / 1e9:7.1f} {f['backward_input'] / 1e9:7.1f} "
          f"{f['backward_weight'] / 1e9:7.1f}   accounted {mem['accounted'] / 2**20:6.0f} MiB "
          f"(activations {mem['activations'] / 2**20:.0f}, adam {mem['adam'] / 2**20:.0f})")
print("torch step breakdown (ms: zero_grad / forward / backward / clip+AdamW; process CPU ms):")
for n in names:
    b = t[n]
    print(f"  {n:<14} {b['zero_grad_ms']:7.1f} {b['forward_ms']:8.0f} {b['backward_ms']:8.0f} "
          f"{b['optimizer_ms']:7.1f}  cpu {b['median_step_cpu_ms']:6.0f}")

import os
if all(os.path.exists(f"{out}/b-{n}.txt") for n in names):
    print("\nbefore (--baseline build) / after (this build), C side, same run:")
    for n in names:
        b = last_json(f"{out}/b-{n}.txt")["methods"][0]
        a = c[n]
        print(f"  {n:<14} {b['median_ms']:7.0f} ms -> {a['median_ms']:7.0f} ms  "
              f"{b['median_ms'] / a['median_ms']:5.2f}x faster; "
              f"{b['pct_of_sgemm_peak']:5.1f}% -> {a['pct_of_sgemm_peak']:5.1f}% of sgemm; "
              f"{b['maxrss_mb']:5.0f} -> {a['maxrss_mb']:5.0f} MB")

if "elora" in c:
    print("\nELoRA : AFLoRA ratios (time C, time torch, FLOPs C):")
    for n in ("aflora", "aflora-all", "aflora-frozen"):
        if n not in c:
            continue
        print(f"  elora / {n:<14} time C {c['elora']['median_ms'] / c[n]['median_ms']:.2f}x, "
              f"time torch {t['elora']['median_ms'] / t[n]['median_ms']:.2f}x, "
              f"FLOPs {c['elora']['flops']['total'] / c[n]['flops']['total']:.2f}x")
EOF
