#!/usr/bin/env bash
# The load generator's own speed beside wrk, back to back in one run, against the same
# cheap endpoint (GET /healthz of a release `paytool serve` on 127.0.0.1):
#   1. wrk -t1 -c64                                  (the anchor; ~6 µs of client CPU a request)
#   2. paytool loadtest, open model, 64 connections, offered twice wrk's rate
#   3. paytool loadtest, Goose's closed model, 64 users (Goose's reqwest client path)
# each pair twice: on shared cores (where the scheduler puts the threads, which moves
# wrk's rate by a third between runs here), and split (server on CPU 0, client on CPU 1).
# and the smoke profile's wall time from command to verdict.
#
# Knobs: DURATION [10] seconds per measurement; SKIP_BUILD [0]; RUNS [1] repetitions.
# Output: a markdown block on stdout, also in bench/results/generator-<date>.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10}
SKIP_BUILD=${SKIP_BUILD:-0}
RUNS=${RUNS:-1}
BIN="$ROOT/target/release/paytool"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[ "$SKIP_BUILD" = 1 ] || cargo build --release --quiet

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_server CPUS: a fresh `paytool serve` on those CPUs (all when empty); sets URL.
start_server() {
  local cpus=$1
  rm -rf "$WORK/data"
  # The last server's token would become this one's (serve reads it from the env).
  unset PAYTOOL_ADMIN_TOKEN
  if [ -n "$cpus" ]; then
    TOKIO_WORKER_THREADS=1 taskset -c "$cpus" "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" > "$WORK/serve.out" 2>&1 &
  else
    "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" > "$WORK/serve.out" 2>&1 &
  fi
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^paytool serve: listening on //p' "$WORK/serve.out")
  [ -n "$URL" ] || { cat "$WORK/serve.out"; exit 1; }
  export PAYTOOL_ADMIN_TOKEN=$(cat "$WORK/data/admin_token")
}
stop_server() { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

json_field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
# cpu_us FILE REQUESTS: CPU microseconds a request, from /usr/bin/time's "user sys" line.
cpu_us() { awk -v n="$2" '{printf "%.1f", ($1 + $2) * 1e6 / n}' "$1"; }

# One pair, wrk then paytool's open model, with the client on CLIENT_CPUS (all when
# empty; then one tokio worker thread a core, as always) - appends a table row.
rows=""
pair() {
  local run=$1 placement=$2 client_cpus=$3
  local pin=() threads=()
  if [ -n "$client_cpus" ]; then pin=(taskset -c "$client_cpus"); threads=(env TOKIO_WORKER_THREADS=1); fi
  /usr/bin/time -f "%U %S" -o "$WORK/wrk.time" "${pin[@]}" timeout $((DURATION + 30)) \
    wrk -t1 -c64 -d"${DURATION}s" --latency "$URL/healthz" > "$WORK/wrk.out"
  wrk_rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
  wrk_n=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
  wrk_p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.out")
  # Offer twice what wrk reached: what comes back is the most the generator (and the
  # server beside it) can do, not the schedule.
  rate=$(python3 -c "print(int(2 * $wrk_rps))")
  /usr/bin/time -f "%U %S" -o "$WORK/open.time" "${threads[@]}" "${pin[@]}" timeout $((DURATION * 6 + 60)) \
    "$BIN" loadtest -p bench/generator.toml --target "$URL" \
    --rate "${rate}/s" --run-time "${DURATION}s" --report-dir "$WORK/reports" --output json > "$WORK/open.json"
  open_rps=$(json_field "$WORK/open.json" 'round(d["total"]["rps"])')
  open_p99=$(json_field "$WORK/open.json" 'd["total"]["p99_ms"]')
  open_n=$(json_field "$WORK/open.json" 'd["total"]["count"]')
  ratio_open=$(python3 -c "print(round($open_rps / $wrk_rps, 2))")
  rows+="| $run | $placement | ${wrk_rps%.*} (p99 $wrk_p99, $(cpu_us "$WORK/wrk.time" "$wrk_n") µs CPU/req) | $open_rps (p99 ${open_p99} ms, $(cpu_us "$WORK/open.time" "$open_n") µs CPU/req) | **$ratio_open** |"$'\n'
}

goose_rows=""
for run in $(seq "$RUNS"); do
  # Shared: server and client anywhere on the machine's cores, as they fall.
  start_server ""
  pair "$run" "shared cores" ""
  timeout $((DURATION * 3 + 60)) "$BIN" loadtest -p bench/generator-goose.toml --target "$URL" \
    --run-time "${DURATION}s" --report-dir "$WORK/reports" --output json > "$WORK/goose.json"
  goose_rps=$(json_field "$WORK/goose.json" 'round(d["total"]["rps"])')
  goose_p99=$(json_field "$WORK/goose.json" 'd["total"]["p99_ms"]')
  goose_rows+="| $run | $goose_rps (p99 ${goose_p99} ms) | $(python3 -c "print(round($goose_rps / $wrk_rps, 2))") |"$'\n'
  stop_server
  # Split: the server on CPU 0, the client on CPU 1, one runtime thread each: the
  # client's own cost decides, not where the scheduler put the threads.
  start_server 0
  pair "$run" "split: server CPU 0, client CPU 1" 1
  stop_server
done

# The smoke profile, command to verdict (release build, its own spawned API).
start=$(date +%s.%N)
smoke_verdict=$(cd "$WORK" && timeout 120 "$BIN" loadtest -p "$ROOT/profiles/smoke.toml" --report-dir "$WORK/smoke" 2>/dev/null | grep -E '^(PASSED|FAILED)' || true)
smoke_s=$(python3 -c "import time; print(round($(date +%s.%N) - $start, 1))")

# wrk --version exits 1 after printing its version: read it without tripping set -e.
wrk_version=$( (wrk --version 2>&1 || true) | head -1 | cut -d' ' -f1-2)
out="## Load generator vs wrk, $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)
- paytool $(git rev-parse --short HEAD) release; $wrk_version
- command: \`DURATION=$DURATION RUNS=$RUNS bench/generator.sh\`; all on one machine: each pair on shared cores, then split (server CPU 0, client CPU 1)
- endpoint: GET /healthz of a fresh \`paytool serve\` for each placement; wrk -t1 -c64 -d${DURATION}s; paytool open model: 64 connections, offered 2x wrk's measured rate for ${DURATION} s, req/s = requests answered / time from first due to last answer (bench/generator.toml); Goose closed model: 64 users (bench/generator-goose.toml)
- CPU/req: the client's whole user + system CPU time (paytool's includes start-up and reports) over its requests

| run | placement | wrk req/s | paytool open model req/s | ratio to wrk (goal >= 1.0) |
| --- | --- | --- | --- | --- |
$rows
Goose's closed model (shared cores, beside the shared-cores wrk of the same run):

| run | Goose req/s | ratio to wrk |
| --- | --- | --- |
$goose_rows
Smoke profile (profiles/smoke.toml, release build), command to verdict: **${smoke_s} s** ($smoke_verdict)
"
echo "$out"
mkdir -p bench/results
echo "$out" > "bench/results/generator-$(date -u +%Y%m%d-%H%M%S).md"
exit 0
