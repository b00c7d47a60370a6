#!/usr/bin/env bash
# HTTP benchmark of `aflorad serve` with wrk (Debian package): requests per
# second and latency percentiles of GET /healthz and GET /jobs/{id}, first
# with the daemon idle, then while a job trains on all cores. Loopback only,
# bounded: each run lasts DURATION seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
command -v wrk >/dev/null || { echo "bench/http.sh: needs wrk (apt-get install wrk)" >&2; exit 2; }
make -s build/aflorad
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
build/aflorad serve --listen 127.0.0.1:0 --data-dir "$dir" --log-level warn > "$dir/out" 2> "$dir/err" &
pid=$!
for _ in $(seq 50); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
base="http://$(awk '/listening/ {print $3}' "$dir/out")"
post() { curl -s -X POST -H 'Content-Type: application/json' "$base/jobs" -d "$1" |
         python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
done_job=$(post '{"model":"demo","epochs":1,"threads":1}')
for _ in $(seq 300); do
  curl -s "$base/jobs/$done_job" | grep -q '"status":"succeeded"' && break; sleep 0.2
done

run() { # label path
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$base$2")
  printf '%-34s %10s req/s  p50 %8s  p99 %8s\n' "$1" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")"
}
echo "aflorad HTTP benchmark: wrk -t2 -c$CONNS -d${DURATION}s, $(nproc) cores"
run "idle: GET /healthz" /healthz
run "idle: GET /jobs/{id}" "/jobs/$done_job"
busy=$(post "{\"model\":\"demo\",\"epochs\":200,\"threads\":$(nproc)}")
for _ in $(seq 100); do
  curl -s "$base/jobs/$busy" | grep -q '"status":"running"' && break; sleep 0.1
done
run "training: GET /healthz" /healthz
run "training: GET /jobs/{id}" "/jobs/$done_job"
steps_before=$(curl -s "$base/jobs/$busy" | python3 -c 'import json,sys; print(json.load(sys.stdin)["progress"]["step"])')
sleep 5
steps_after=$(curl -s "$base/jobs/$busy" | python3 -c 'import json,sys; print(json.load(sys.stdin)["progress"]["step"])')
echo "training kept going under load: $((steps_after - steps_before)) steps in the 5 s after"
curl -s -X POST "$base/jobs/$busy/cancel" > /dev/null
