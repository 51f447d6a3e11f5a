#!/usr/bin/env bash
# The failover write gap (issue 13): how long a shard's merchants cannot write when its
# primary crashes and its synchronous standby is promoted. One release `paytool loadtest`
# per run, open model (RATE arrivals/s of the checkout journey: create + capture), one API
# instance on 2 throwaway PostgreSQL shards each with a synchronous standby
# (`replicas = 1`), and a `failover` chaos step on shard s0 at 8 s whose `for` (DETECT)
# stands for the failure detector's delay before `pg_ctl promote`. Read from the run's
# summary.json: the crash, the promotion, and the last failed request before an
# error-free second (the chaos record's recovered_after_s, counted from the promotion).
#   gap = DETECT + (promotion to writes back)
# The second term is paytool's part (promotion + the API finding the new primary through
# its multi-host URL); the first is whatever detector a deployment runs.
#
# Knobs: RATE [600]; DETECT [1s]; RUNS [3]; SKIP_BUILD [0].
# Output: a markdown block on stdout, also in bench/results/failover-<date>.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RATE=${RATE:-600}
DETECT=${DETECT:-1s}
RUNS=${RUNS:-3}
SKIP_BUILD=${SKIP_BUILD:-0}
BIN="$ROOT/target/release/paytool"
[ "$SKIP_BUILD" = 1 ] || cargo build --release --quiet

WORK=$(mktemp -d)
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT

cat > "$WORK/failover.toml" <<TOML
name = "failover-gap"
[target]
layout = "$ROOT/profiles/shards/two.toml"
postgres = "spawn"
replicas = 1
[load]
rate = "${RATE}/s"
run_time = "20s"
connections = 64
timeout = "10s"
[merchants]
count = 16
[scenarios]
checkout = 1
[thresholds]
error_rate_max = 0.5
[report]
formats = []
[audit]
enabled = true
[[chaos]]
at = "8s"
fault = "failover"
shard = "s0"
for = "$DETECT"
TOML

rows=""
for run in $(seq "$RUNS"); do
  rm -rf "$WORK/reports"
  timeout 300 "$BIN" loadtest -p "$WORK/failover.toml" --report-dir "$WORK/reports" --output json \
    > "$WORK/run.json" 2> "$WORK/run.err" || true
  row=$(python3 - "$WORK/run.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
f = d["chaos"][0]
detect = f["lifted_at_s"] - f["injected_at_s"]
back = f["recovered_after_s"]
gap = "not within the run" if back is None else f"**{detect + back:.2f} s**"
back_s = "-" if back is None else f"{back:.2f} s"
audit = d["audit"]
print(f"{detect:.2f} s | {back_s} | {gap} | {f['failed']} of {f['requests']} | "
      f"{'clean' if audit['ok'] else 'FAILED'} over {audit['acknowledged_payments']} payments |")
PY
)
  rows+="| $run | $row"$'\n'
done

out="## Failover write gap, $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r); PostgreSQL $(ls /usr/lib/postgresql | sort -n | tail -1)
- paytool $(git rev-parse --short HEAD) release; command: \`RATE=$RATE DETECT=$DETECT RUNS=$RUNS bench/failover.sh\`
- open model, ${RATE} checkout journeys/s (create + capture) for 20 s; 1 API instance on 2 shards, each with a synchronous standby; shard s0's primary crashed (\`pg_ctl stop -m immediate\`) at 8 s, its standby promoted (\`pg_ctl promote -w\`) after DETECT

| run | crash to promotion (DETECT) | promotion to writes back | write gap | failed requests in the window | audit |
| --- | --- | --- | --- | --- | --- |
$rows
Anchor: Patroni's defaults (ttl 30 s, \"the length of time before initiation of the automatic failover process\"; loop_wait 10 s; retry_timeout 10 s) put its detection alone at up to 30 s before a promotion begins.
"
echo "$out"
mkdir -p bench/results
echo "$out" > "bench/results/failover-$(date -u +%Y%m%d-%H%M%S).md"
