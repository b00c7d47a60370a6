#!/usr/bin/env bash
# llama.sh — the causal-LM training-step benchmark, C engine against
# PyTorch, side by side: one AFLoRA r=32 step of a TinyLlama-1.1B-shaped
# model on 1 x 256 tokens (bench/llama_step.c, bench/llama_step_torch.py),
# then the memory estimate against the measured peak for BERT-base (one
# bench/step run of method aflora).
#
# Each side runs in its own fresh process (ru_maxrss is its own), C first,
# then torch; --rounds N repeats the pair, alternating, so load from other
# work drifts over both alike. GFLOP/s of both sides use the engine's FLOP
# count (the same math); each side's "% of sgemm" is against the sgemm rate
# measured in its own process. Raw outputs go to build/bench/results/llama-*.
# The OpenBLAS core is chosen as in run.sh (bench/blas_core.sh).
#
# usage: bench/llama.sh [--steps N] [--layers L] [--threads N] [--rounds N]
#                       [--coretype auto|default|NAME] [--no-bert]
#   ~5-8 minutes with the defaults (22 layers, 3 steps) on 2 busy cores;
#   --layers 2 --steps 1 for a quick check.
set -euo pipefail
cd "$(dirname "$0")/.."

steps=3
layers=22
threads=$(nproc)
rounds=1
coretype=auto
bert=1
py=/usr/bin/python3
while (($#)); do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --coretype) coretype=$2; shift 2 ;;
    --no-bert) bert=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "llama.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

make --no-print-directory bench >/dev/null
source bench/blas_core.sh
bench_blas_core "$coretype" "$py"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

out=build/bench/results
mkdir -p "$out"
rm -f "$out"/llama-*.txt
echo "llama step benchmark: layers=$layers steps=$steps threads=$threads rounds=$rounds" \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset, detected $detected>}" \
     "OMP_WAIT_POLICY=$OMP_WAIT_POLICY load: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$SECONDS
for ((r = 1; r <= rounds; r++)); do
  t0=$SECONDS
  build/bench/llama_step --layers "$layers" --steps "$steps" --threads "$threads" \
    >"$out/llama-c-$r.txt"
  t1=$SECONDS
  "$py" bench/llama_step_torch.py --layers "$layers" --steps "$steps" --threads "$threads" \
    >"$out/llama-torch-$r.txt"
  echo "  round $r: C $((t1 - t0)) s, torch $((SECONDS - t1)) s (wall, including set-up);" \
       "load now $(cut -d' ' -f1-3 /proc/loadavg)"
done
if ((bert)); then
  build/bench/step --method aflora --steps 1 --threads "$threads" >"$out/llama-bert.txt"
fi
echo "total $((SECONDS - start)) s; load now: $(cut -d' ' -f1-3 /proc/loadavg)"

"$py" - "$out" "$rounds" "$bert" <<'PY'
import json, sys

out, rounds, bert = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
MIB = 2 ** 20

def last_json(path):
    with open(path) as f:
        return json.loads([l for l in f if l.startswith("{")][-1])

for r in range(1, rounds + 1):
    c, t = last_json(f"{out}/llama-c-{r}.txt"), last_json(f"{out}/llama-torch-{r}.txt")
    fl = c["flops"]["total"]
    if r == 1:
        print(f"\nmachine: {c['nproc']} cores, {c['cpu']}; {c['openblas']}; threads {c['threads']}; "
              f"{c['layers']} layers, batch {c['batch']} x seq {c['seq']}, AFLoRA r={c['rank']}; "
              f"median of {c['steps']} steps after 1 warm-up; torch {t['torch']}")
        print(f"FLOPs per step (engine count): {fl / 1e9:.1f} G (forward "
              f"{c['flops']['forward'] / 1e9:.1f}, backward-input "
              f"{c['flops']['backward_input'] / 1e9:.1f}, backward-weight "
              f"{c['flops']['backward_weight'] / 1e9:.2f}); trainable C {c['trainable_params']}, "
              f"torch {t['trainable_params']}")
        hdr = (f"{'round':>5} {'side':<6} {'step ms':>9} {'fwd ms':>8} {'bwd ms':>8} {'opt ms':>7} "
               f"{'GFLOP/s':>8} {'sgemm':>7} {'%sgemm':>7} {'peak MiB':>9} {'grew MiB':>9}")
        print(hdr)
        print("-" * len(hdr))
    for side, j in (("C", c), ("torch", t)):
        gfs = fl / (j["median_ms"] * 1e6)
        print(f"{r:>5} {side:<6} {j['median_ms']:>9.0f} {j['forward_ms']:>8.0f} "
              f"{j['backward_ms']:>8.0f} {j['optimizer_ms']:>7.1f} {gfs:>8.1f} "
              f"{j['sgemm_gflops']['best']:>7.1f} {100 * gfs / j['sgemm_gflops']['best']:>6.1f}% "
              f"{j['maxrss_mb']:>9.0f} {j['maxrss_delta_mb']:>9.0f}")
    print(f"{'':>5} torch/C: time {t['median_ms'] / c['median_ms']:.2f}x, "
          f"peak RSS {t['maxrss_mb'] / c['maxrss_mb']:.2f}x")

c = last_json(f"{out}/llama-c-1.txt")
e = c["estimate_bytes"]
print("\nmemory estimate (train/memory.h) against the peak-RSS growth of the C process:")
print(f"  TinyLlama shape: estimate {e['total'] / MIB:.0f} MiB (weights {e['weights'] / MIB:.0f}, "
      f"grads {e['grads'] / MIB:.1f}, optimizer {e['optimizer'] / MIB:.1f} incl. freezer scores "
      f"the bench does not hold, activations {e['activations'] / MIB:.0f}); measured "
      f"{c['maxrss_delta_mb']:.0f} MiB; estimate/measured {e['total'] / MIB / c['maxrss_delta_mb']:.3f}")
if bert:
    b = last_json(f"{out}/llama-bert.txt")
    m = b["methods"][0]
    eb = m["estimate_bytes"]
    print(f"  BERT-base aflora r=4, batch {b['batch']} x {b['seq']}: estimate {eb['total'] / MIB:.0f} "
          f"MiB (weights {eb['weights'] / MIB:.0f}, activations {eb['activations'] / MIB:.0f}, "
          f"optimizer {eb['optimizer'] / MIB:.1f}); measured {m['maxrss_delta_mb']:.0f} MiB; "
          f"estimate/measured {eb['total'] / MIB / m['maxrss_delta_mb']:.3f}")
PY
