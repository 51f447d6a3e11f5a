#!/usr/bin/env bash
# Does the API slow down as its store grows (issue 14: payments/s with 10 M payments
# stored ÷ with an empty store, goal >= 0.95)? One `paytool serve` on one shard, fresh:
# embedded SQLite (BACKEND=sqlite, the default) or one PostgreSQL server of its own
# (BACKEND=postgres, as bench/payment_cost.sh), and on the same cores:
#   1. wrk -t1 -c64 -d$DURATION POST /v1/payments on the empty store   (the anchor)
#   2. wrk -t1 -c64 in chunks of $CHUNK until $TARGET payments are stored (the fill;
#      each chunk's rate is kept, so the curve shows where a slowdown starts)
#   3. wrk -t1 -c64 -d$DURATION again, with $TARGET stored                (the figure)
# Payments are created and captured, durable, a unique Idempotency-Key each
# (bench/payments.lua), as in bench/payment_cost.sh. Idempotency records are kept for
# 24 h by default, so none is pruned during the run: every stored payment keeps its key.
#
# Knobs: BACKEND [sqlite] or postgres; TARGET [10000000] payments before the last run; DURATION [15s]; CHUNK [60s];
#        FILL_MAX [1800] seconds the fill may take at most; MERCHANTS [8]; SKIP_BUILD [0];
#        KEEP [0] keeps the data dir (SQLite about 0.6 kB a payment, PostgreSQL about
#        2.4 kB: 6 and 24 GB for 10 M).
# Output: a markdown block on stdout, also in bench/results/store-growth-<date>.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
TARGET=${TARGET:-10000000}
DURATION=${DURATION:-15s}
CHUNK=${CHUNK:-60s}
FILL_MAX=${FILL_MAX:-1800}
MERCHANTS=${MERCHANTS:-8}
KEEP=${KEEP:-0}
check_backend
WORK=$(mktemp -d)
SERVER_PID=""
PG_DATAS=()
PG_OPTS=
cleanup() {
  local rc=$?
  set +e
  end_process "$SERVER_PID"
  [[ ${#PG_DATAS[@]} -gt 0 ]] && stop_clusters
  drop_work
  exit $rc
}
trap_cleanup
load_tools
paytool_binary

DATA=$WORK/data
serve_one_shard "$DATA"
KEYS=$(make_merchants 1 "$ADMIN_TOKEN")
STORED=0

# pay TAG SECONDS: one bounded wrk run; sets RATE (2xx a second), P99_MS, OK; adds OK to STORED.
pay() {
  local tag=$1 secs=$2 out=$WORK/$1.txt n non200 dur_us p99_us
  wrk_payments "growth-$tag-$(date +%s%N)" "${secs}s" "$out"
  n=$(sed -n 's/.*BENCH requests=\([0-9]*\).*/\1/p' "$out")
  non200=$(sed -n 's/.* non200=\([0-9]*\).*/\1/p' "$out")
  dur_us=$(sed -n 's/.* duration_us=\([0-9]*\).*/\1/p' "$out")
  p99_us=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' "$out")
  OK=$((n - non200))
  STORED=$((STORED + OK))
  RATE=$(awk -v n="$OK" -v d="$dur_us" 'BEGIN{printf "%.0f", n / (d / 1e6)}')
  P99_MS=$(awk -v u="$p99_us" 'BEGIN{printf "%.1f", u / 1000}')
  (( non200 == 0 )) || log "$tag: $non200 answers were not 200"
}

ds=$(to_seconds "$DURATION")
cs=$(to_seconds "$CHUNK")
log "empty store: wrk -t1 -c64 -d$DURATION"
pay empty "$ds"
EMPTY_RATE=$RATE; EMPTY_P99=$P99_MS
rows=""
started=$(date +%s)
chunk=0
while (( STORED < TARGET )); do
  (( $(date +%s) - started < FILL_MAX )) || die "the fill took over FILL_MAX=${FILL_MAX}s at $STORED payments"
  chunk=$((chunk + 1))
  pay "fill-$chunk" "$cs"
  log "fill $chunk: $RATE payments/s (p99 $P99_MS ms), $STORED stored"
  rows+="| $(th "$STORED") | $(th "$RATE") | $P99_MS |"$'\n'
done
log "with $STORED stored: wrk -t1 -c64 -d$DURATION"
at=$STORED
pay full "$ds"
stop_server
if [[ $BACKEND == sqlite ]]; then
  bytes=$(du -cb "$DATA"/shard-*.db* | tail -1 | cut -f1)
  files="shard files at the end (data + WAL, not checkpointed)"
else
  bytes=$(pg_sql pg paytool "SELECT pg_database_size(current_database())")
  files="the database at the end (pg_database_size, not checkpointed)"
fi

out="## The API as its store grows ($BACKEND), $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r); $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')
- paytool $BUILT_FROM; command: \`BACKEND=$BACKEND TARGET=$TARGET DURATION=$DURATION CHUNK=$CHUNK bench/store_growth.sh\`
- $STORE; wrk -t1 -c64, payments created and captured, on the same 2 cores as the server

| figure | value | goal (issue 14) |
| --- | --- | --- |
| payments/s on the empty store (the anchor) | $(th "$EMPTY_RATE") (p99 $EMPTY_P99 ms) | |
| payments/s with $(th "$at") stored | $(th "$RATE") (p99 $P99_MS ms) | |
| ratio | **$(ratio "$RATE" "$EMPTY_RATE")** | ≥ 0.95 |
| $files | $(th "$bytes") bytes | |

The fill, a row per ${CHUNK} chunk (payments stored at its end, its rate):

| stored | payments/s | p99 ms |
| --- | --- | --- |
$rows"
echo "$out"
mkdir -p bench/results
suffix=""
[[ $BACKEND == postgres ]] && suffix="-postgres"
echo "$out" >"bench/results/store-growth$suffix-$(date -u +%Y%m%d-%H%M%S).md"
