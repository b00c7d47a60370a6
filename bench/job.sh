#!/usr/bin/env bash
# job.sh — a whole demo job, end to end, for one or more builds side by side.
#
# Times `aflorad run` of each BUILD/aflorad on the demo model and dataset
# that `aflorad init-demo` writes (a tiny BERT, 2,000 training and 400 eval
# sentences): tokenising, training, evaluation, writing the adapter — what a
# user waits for, not just the step. Give an old and a new build folder to
# compare them (e.g. a checkout of main built into build-main); rounds run
# the builds in rotating order so that load from other work drifts over all
# of them alike. The environment (OPENBLAS_CORETYPE, OMP_WAIT_POLICY...) is
# passed through unchanged; each build then applies its own defaults (a build
# with daemon/blas_setup.c logs the core it chose, shown below).
#
# usage: bench/job.sh [--epochs N] [--threads N] [--rounds N] BUILD [BUILD...]
#   --epochs N    epochs of the job (default: the spec's default)
#   --threads N   the spec's threads (default: all online cores)
#   --rounds N    runs per build (default 3); the median is reported
set -euo pipefail
cd "$(dirname "$0")/.."

epochs=
threads=$(nproc)
rounds=3
builds=()
while (($#)); do
  case $1 in
    --epochs) epochs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "job.sh: unknown option $1" >&2; exit 2 ;;
    *) builds+=("$1"); shift ;;
  esac
done
if ((${#builds[@]} == 0)); then
  echo "usage: bench/job.sh [--epochs N] [--threads N] [--rounds N] BUILD [BUILD...]" >&2
  exit 2
fi
for b in "${builds[@]}"; do
  [[ -x $b/aflorad ]] || { echo "job.sh: $b/aflorad not found (make BUILD=$b)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${builds[0]}/aflorad" init-demo "$work/demo" >/dev/null
{
  printf '{"model": "%s/demo", "dataset": {"train": "%s/demo/train.tsv", "eval": "%s/demo/dev.tsv"}' \
    "$work" "$work" "$work"
  [[ -n $epochs ]] && printf ', "epochs": %s' "$epochs"
  printf ', "threads": %s}\n' "$threads"
} >"$work/spec.json"

echo "demo job: $(cat "$work/spec.json")"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores;" \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-<unset>}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 0; r < rounds; r++)); do
  for ((i = 0; i < ${#builds[@]}; i++)); do
    k=$(((i + r) % ${#builds[@]}))
    b=${builds[$k]}
    /usr/bin/time -f '%e %U %S' -o "$work/time" \
      "$b/aflorad" run "$work/spec.json" --out "$work/out$k" --restart >"$work/stdout" 2>"$work/stderr"
    read -r wall user sys <"$work/time"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    train=$(sed -n 's/^done .* steps in \([0-9.]*\) s.*/\1/p' "$work/stdout")
    steps=$(sed -n 's/^done *\([0-9]*\) steps.*/\1/p' "$work/stdout")
    acc=$(grep '^eval' "$work/stdout" | tail -n 1 | sed -n 's/.*accuracy \([0-9.]*\).*/\1/p')
    blas=$(sed -n 's/.*blas: \(OpenBLAS .* core [^ ]* ([^)]*)\).*/\1/p' "$work/stderr")
    echo "$k $wall $train $cpu" >>"$work/times"
    echo "  round $r $b: $wall s wall, $cpu s CPU, training $train s, $steps steps," \
         "accuracy ${acc:-?}; ${blas:-no blas line}; load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

/usr/bin/python3 - "$work/times" "${builds[@]}" <<'EOF'
import statistics, sys

rows = [l.split() for l in open(sys.argv[1])]
builds = sys.argv[2:]
print(f"\n{'build':<24} {'wall s':>8} {'train s':>8} {'CPU s':>8} {'wall vs first':>13} "
      f"{'CPU vs first':>12}  wall per round")
first = None
for k, b in enumerate(builds):
    mine = [r for r in rows if int(r[0]) == k]
    wall, train, cpu = (statistics.median(float(r[i]) for r in mine) for i in (1, 2, 3))
    first = first or (wall, cpu)
    print(f"{b:<24} {wall:>8.2f} {train:>8.2f} {cpu:>8.2f} {wall / first[0]:>12.2f}x "
          f"{cpu / first[1]:>11.2f}x  " + " ".join(f"{float(r[1]):.2f}" for r in mine))
print("wall: the whole `aflorad run` process; train: the run's own 'done ... in N s'; CPU: user + "
      "system time of the process (steadier than wall under load); medians over rounds")
EOF
