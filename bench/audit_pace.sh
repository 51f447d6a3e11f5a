#!/usr/bin/env bash
# The money audit and reports after a run at the machine's top rate, beside the run's
# own load time (the issue's goal: at most a quarter of it). One release `paytool
# loadtest` of profiles/open-checkout.toml, its API spawned in-process on 2 SQLite
# shards, offered RATE/s for DURATION s: the time from the load's end (summary.json's
# ended_at) to the process's exit is the audit (resends, the bulk read-back, the ledger
# audit) and the reports; summary.json's audit_s is the audit alone.
#
# Knobs: RATE [20000] offered arrivals/s; DURATION [15] s; CONNECTIONS [256];
#        SKIP_BUILD [0]; RUNS [2].
# Output: a markdown block on stdout, also in bench/results/audit-pace-<date>.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RATE=${RATE:-20000}
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-256}
SKIP_BUILD=${SKIP_BUILD:-0}
RUNS=${RUNS:-2}
BIN="$ROOT/target/release/paytool"
[ "$SKIP_BUILD" = 1 ] || cargo build --release --quiet

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

rows=""
for run in $(seq "$RUNS"); do
  timeout $((DURATION * 10 + 120)) "$BIN" loadtest -p profiles/open-checkout.toml \
    --rate "${RATE}/s" --connections "$CONNECTIONS" --run-time "${DURATION}s" \
    --threshold error_rate_max=1 --threshold p99_ms_max=100000 \
    --report-dir "$WORK/reports" --output json > "$WORK/run.json" || true
  exited_ms=$(date +%s%3N)
  rows+=$(python3 - "$WORK/run.json" "$exited_ms" "$run" <<'PY'
import json, sys, datetime
d = json.load(open(sys.argv[1]))
exited = int(sys.argv[2]) / 1000
ended = datetime.datetime.fromisoformat(d["ended_at"].replace("Z", "+00:00")).timestamp()
after = exited - ended
load = d["duration_s"]
audit = d.get("audit_s") or 0
acked = d["audit"]["acknowledged_payments"]
verdict = "clean" if d["audit"]["ok"] else "FAILED"
print(f"| {sys.argv[3]} | {round(d['total']['ok_rps'])} | {acked} | {load:.1f} | {audit:.1f} | {after:.1f} | **{after / load:.2f}** | {verdict} |")
PY
)$'\n'
done

out="## The audit's pace at the top rate, $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)
- paytool $(git rev-parse --short HEAD) release; command: \`RATE=$RATE DURATION=$DURATION CONNECTIONS=$CONNECTIONS RUNS=$RUNS bench/audit_pace.sh\`
- profiles/open-checkout.toml offered ${RATE}/s for ${DURATION} s on ${CONNECTIONS} connections (more than the machine does: the API, its 2 SQLite shards and the generator share the cores); thresholds opened so every run reaches its audit

| run | successful req/s | payments audited | load s | audit s | load end to exit s (audit + reports) | ÷ load (goal ≤ 0.25) | audit |
| --- | --- | --- | --- | --- | --- | --- | --- |
$rows"
echo "$out"
mkdir -p bench/results
echo "$out" > "bench/results/audit-pace-$(date -u +%Y%m%d-%H%M%S).md"
