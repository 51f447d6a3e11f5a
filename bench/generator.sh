#!/usr/bin/env bash
# The load generator's own speed beside wrk, back to back in one run, against the same
# cheap endpoint (GET /healthz of a release `paytool serve` on 127.0.0.1):
#   1. wrk -t1 -c64                                  (the anchor; ~4 µs of client CPU a request)
#   2. paytool loadtest, open model, 64 connections, offered twice wrk's rate
#   3. paytool loadtest, Goose's closed model, 64 users (Goose's reqwest client path)
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

"$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" > "$WORK/serve.out" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^paytool serve: listening on //p' "$WORK/serve.out")
[ -n "$URL" ] || { cat "$WORK/serve.out"; exit 1; }
export PAYTOOL_ADMIN_TOKEN=$(cat "$WORK/data/admin_token")

json_field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

rows=""
for run in $(seq "$RUNS"); do
  wrk_out=$(timeout $((DURATION + 30)) wrk -t1 -c64 -d"${DURATION}s" --latency "$URL/healthz")
  wrk_rps=$(echo "$wrk_out" | awk '/Requests\/sec/ {print $2}')
  wrk_p99=$(echo "$wrk_out" | awk '$1=="99%" {print $2}')
  # Offer twice what wrk reached: what comes back is the most the generator (and the
  # server beside it) can do, not the schedule.
  rate=$(python3 -c "print(int(2 * $wrk_rps))")

  timeout $((DURATION * 6 + 60)) "$BIN" loadtest -p bench/generator.toml --target "$URL" \
    --rate "${rate}/s" --run-time "${DURATION}s" --report-dir "$WORK/reports" --output json > "$WORK/open.json"
  open_rps=$(json_field "$WORK/open.json" 'round(d["total"]["rps"])')
  open_p99=$(json_field "$WORK/open.json" 'd["total"]["p99_ms"]')
  open_late=$(json_field "$WORK/open.json" 'd["open_model"]["late"]')
  open_n=$(json_field "$WORK/open.json" 'd["total"]["count"]')

  timeout $((DURATION * 3 + 60)) "$BIN" loadtest -p bench/generator-goose.toml --target "$URL" \
    --run-time "${DURATION}s" --report-dir "$WORK/reports" --output json > "$WORK/goose.json"
  goose_rps=$(json_field "$WORK/goose.json" 'round(d["total"]["rps"])')
  goose_p99=$(json_field "$WORK/goose.json" 'd["total"]["p99_ms"]')

  ratio_open=$(python3 -c "print(round($open_rps / $wrk_rps, 2))")
  ratio_goose=$(python3 -c "print(round($goose_rps / $wrk_rps, 2))")
  rows+="| $run | ${wrk_rps%.*} (p99 $wrk_p99) | $open_rps (p99 ${open_p99} ms, $open_n requests, $open_late late) | **$ratio_open** | $goose_rps (p99 ${goose_p99} ms) | $ratio_goose |"$'\n'
done
kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=

# The smoke profile, command to verdict (release build, its own spawned API).
start=$(date +%s.%N)
smoke_verdict=$(cd "$WORK" && timeout 120 "$BIN" loadtest -p "$ROOT/profiles/smoke.toml" --report-dir "$WORK/smoke" 2>/dev/null | grep -E '^(PASSED|FAILED)' || true)
smoke_s=$(python3 -c "import time; print(round($(date +%s.%N) - $start, 1))")

# wrk --version exits 1 after printing its version: read it without tripping set -e.
wrk_version=$( (wrk --version 2>&1 || true) | head -1 | cut -d' ' -f1-2)
out="## Load generator vs wrk, $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)
- paytool $(git rev-parse --short HEAD) release; $wrk_version
- command: \`DURATION=$DURATION RUNS=$RUNS bench/generator.sh\`; all on one machine, server and client sharing the cores
- endpoint: GET /healthz of \`paytool serve\`; wrk -t1 -c64 -d${DURATION}s; paytool open model: 64 connections, offered 2x wrk's measured rate for ${DURATION} s, req/s = requests answered / time from first due to last answer (bench/generator.toml); Goose closed model: 64 users (bench/generator-goose.toml)

| run | wrk req/s | paytool open model req/s | ratio to wrk (goal >= 0.5) | Goose closed model req/s | ratio to wrk |
| --- | --- | --- | --- | --- | --- |
$rows
Smoke profile (profiles/smoke.toml, release build), command to verdict: **${smoke_s} s** ($smoke_verdict)
"
echo "$out"
mkdir -p bench/results
echo "$out" > "bench/results/generator-$(date -u +%Y%m%d-%H%M%S).md"
exit 0
