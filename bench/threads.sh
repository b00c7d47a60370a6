#!/usr/bin/env bash
# threads.sh — one thread team: which OpenBLAS threading and OpenMP wait
# policy make the training step fastest, side by side in one run.
#
# The engine runs its own kernels (GELU, LayerNorm, softmax, AdamW...) on an
# OpenMP team and its GEMMs in OpenBLAS. With the pthreads build of OpenBLAS
# these are two thread pools on the same cores: OpenMP threads that spin
# while idle (libgomp's default wait policy spins for a while before
# sleeping) take cores from OpenBLAS's threads during every GEMM. Setups
# compared, each in a fresh build/bench/step process (the library and the
# wait policy are read when the process loads):
#   pthreads          Debian's default libopenblas0-pthread, OMP_WAIT_POLICY unset
#   pthreads-passive  the same library, OMP_WAIT_POLICY=passive
#   openmp            libopenblas0-openmp (LD_LIBRARY_PATH to its directory,
#                     this process only: the system default is not changed),
#                     OMP_WAIT_POLICY unset — OpenBLAS then runs its GEMMs on
#                     the same libgomp team as the engine's kernels
#   openmp-passive    the OpenMP build with OMP_WAIT_POLICY=passive
#   pthreads-passive-t4  pthreads, passive, and OPENBLAS_THREAD_TIMEOUT=4: idle
#                     OpenBLAS server threads sleep after 2^4 cycles instead
#                     of spinning up to 2^28 (only with --setups)
# Rounds run the setups in rotating order so that load from other work drifts
# over all of them alike; the table shows each setup's median over rounds and
# its ratio to pthreads-passive. Only ratios within one run mean anything on a
# shared machine.
#
# usage: bench/threads.sh [--methods a,b] [--steps N] [--threads N] [--rounds N]
#                         [--coretype NAME] [--build DIR] [--setups a,b,...]
#   OPENBLAS_CORETYPE is kept from the environment unless --coretype is given.
set -euo pipefail
cd "$(dirname "$0")/.."

methods=aflora,full
steps=2
threads=$(nproc)
rounds=2
build=build
setups=(pthreads pthreads-passive openmp openmp-passive)
openmp_dir=/usr/lib/x86_64-linux-gnu/openblas-openmp
while (($#)); do
  case $1 in
    --methods) methods=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --coretype) export OPENBLAS_CORETYPE=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --setups) IFS=, read -ra setups <<<"$2"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "threads.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

make --no-print-directory BUILD="$build" "$build/bench/step" >/dev/null
step=$build/bench/step
if [[ ! -e $openmp_dir/libopenblas.so.0 ]]; then
  echo "threads.sh: $openmp_dir/libopenblas.so.0 missing: apt-get install libopenblas0-openmp" >&2
  exit 1
fi

# Runs $step with setup $1's environment; the rest of the arguments are step's.
run_setup() {
  local s=$1; shift
  case $s in
    pthreads) env -u OMP_WAIT_POLICY "$step" "$@" ;;
    pthreads-passive) env OMP_WAIT_POLICY=passive "$step" "$@" ;;
    openmp) env -u OMP_WAIT_POLICY LD_LIBRARY_PATH="$openmp_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      "$step" "$@" ;;
    pthreads-passive-t4) env OMP_WAIT_POLICY=passive OPENBLAS_THREAD_TIMEOUT=4 "$step" "$@" ;;
    openmp-passive) env OMP_WAIT_POLICY=passive \
      LD_LIBRARY_PATH="$openmp_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$step" "$@" ;;
  esac
}

out=$build/bench/threads
mkdir -p "$out"
rm -f "$out"/*.txt
echo "threads benchmark: methods=$methods steps=$steps threads=$threads rounds=$rounds"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores;" \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>}"
echo "libraries: pthreads $(ldd "$step" | awk '/libopenblas/ {print $3}' | xargs readlink -f)," \
     "openmp $(LD_LIBRARY_PATH=$openmp_dir ldd "$step" | awk '/libopenblas/ {print $3}' | xargs readlink -f)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
IFS=, read -ra mlist <<<"$methods"
start=$SECONDS
for ((r = 0; r < rounds; r++)); do
  for m in "${mlist[@]}"; do
    for ((i = 0; i < ${#setups[@]}; i++)); do
      s=${setups[$(((i + r) % ${#setups[@]}))]}
      t0=$SECONDS
      run_setup "$s" --method "$m" --steps "$steps" --threads "$threads" >"$out/$s-$m-$r.txt"
      echo "  round $r $m $s: $((SECONDS - t0)) s wall, load $(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
echo "total $((SECONDS - start)) s; load after: $(cut -d' ' -f1-3 /proc/loadavg)"

/usr/bin/python3 - "$out" "$rounds" "$methods" "${setups[@]}" <<'EOF'
import json, statistics, sys

out, rounds, methods, setups = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4:]

def record(s, m, r):
    with open(f"{out}/{s}-{m}-{r}.txt") as f:
        return json.loads([l for l in f if l.startswith("{")][-1])

base = "pthreads-passive" if "pthreads-passive" in setups else setups[0]
print(f"\n{'method':<14} {'setup':<17} {'step ms':>8} {'cpu ms':>8} {'sgemm GF/s':>10} "
      f"{'vs ' + base:>20}  per round (ms)")
for m in methods:
    med = {}
    for s in setups:
        recs = [record(s, m, r) for r in range(rounds)]
        ms = [x["methods"][0]["median_ms"] for x in recs]
        cpu = [x["methods"][0]["median_step_cpu_ms"] for x in recs]
        peak = [x["sgemm_peak_gflops"]["best"] for x in recs]
        med[s] = (statistics.median(ms), statistics.median(cpu), statistics.median(peak), ms)
    for s in setups:
        t, c, p, ms = med[s]
        print(f"{m:<14} {s:<17} {t:>8.0f} {c:>8.0f} {p:>10.1f} {t / med[base][0]:>19.2f}x  "
              + " ".join(f"{x:.0f}" for x in ms))
print("step ms: median over rounds of each process's median step; cpu ms: process CPU time "
      "of that step (spinning included); vs: step time / that setup's")
EOF
