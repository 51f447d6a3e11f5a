#!/usr/bin/env bash
# Two builds (or one build under two environments) of `paytool serve` side by side, for a
# change to the embedded API's write path (issue 14). This machine's speed drifts by up
# to 2x over minutes (the healthz anchor moved between 115,000 and 215,000/s in one
# hour), so one run of each side decides nothing: the sides alternate, PAIRS times, the
# order flipping every pair, and the medians are compared. Each run is a fresh server on
# one fresh SQLite shard, then on the same cores in turn
#   1. wrk -t1 -c64 GET /healthz      (the anchor, as in payment_cost.sh)
#   2. wrk -t1 -c64 POST /v1/payments (bench/payments.lua: created and captured, durable)
# and, over the middle of run 2, each server thread's time on a core and waiting for
# one (/proc/PID/task/TID/schedstat: on-CPU and run-queue nanoseconds), and the group
# commit's batches and the share of the time the writer spent in one (/metrics).
#
# Knobs: A_BIN, B_BIN      the binaries [both target/release/paytool]
#        A_ENV, B_ENV      environment for that side's server, "K=V K=V" [none]
#        A_NAME, B_NAME    labels [A, B]; PAIRS [4]; DURATION [10s] each wrk run
# Output: a markdown block on stdout, also in bench/results/payment-ab-<date>.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
PAIRS=${PAIRS:-4}
DURATION=${DURATION:-10s}
MERCHANTS=8
KEEP=${KEEP:-0}
A_BIN=${A_BIN:-$ROOT/target/release/paytool}
B_BIN=${B_BIN:-$ROOT/target/release/paytool}
A_NAME=${A_NAME:-A}
B_NAME=${B_NAME:-B}
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  local rc=$?
  set +e
  end_process "$SERVER_PID"
  drop_work
  exit $rc
}
trap_cleanup
load_tools
BACKEND=sqlite
for b in "$A_BIN" "$B_BIN"; do [[ -x $b ]] || die "$b is not an executable"; done
# A build that just finished is still dirty in the page cache: out to disk now, not
# during the first pair's runs (bench/lib.sh, paytool_binary).
sync

# Per thread name: on-CPU and run-queue nanoseconds (summed over threads of that name).
schedstat() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(cut -d' ' -f1,2 "$t/schedstat")"
  done 2>/dev/null
}
# "name on/wait, ..." in cores over SECONDS, from two schedstat files.
cores_by_thread() {
  awk -v s="$3" 'NR==FNR {r[$1]+=$2; w[$1]+=$3; next} {R[$1]+=$2; W[$1]+=$3}
    END {for (k in R) if (R[k]-r[k] > s*1e7) printf "%s %.2f/%.2f\n", k, (R[k]-r[k])/1e9/s, (W[k]-w[k])/1e9/s}' "$1" "$2" |
    sort -k2 -nr | awk '{printf "%s%s %s", (NR>1 ? ", " : ""), $1, $2}'
}

# One run of side NAME (binary BIN, environment ENV); appends a row to $WORK/rows.
run_side() {
  local name=$1 bin=$2 env=$3 ds health pay n s0 s1 secs on batches paid committing
  BIN=$bin
  rm -rf "$WORK/data"
  serve_one_sqlite_shard "$WORK/data" "$env"
  KEYS=$(make_merchants 1 "$ADMIN_TOKEN")
  ds=$(to_seconds "$DURATION")
  health=$(timeout $((ds + 60)) wrk -t1 -c64 -d"$DURATION" "http://$ADDR/healthz" | awk '/Requests\/sec/ {print $2}')
  wrk_payments "ab-${name//[^A-Za-z0-9_-]/-}-$(date +%s%N)" "$DURATION" "$WORK/pay.txt" &
  local wrk=$!
  # The middle of the run: a second in, a second before its end.
  sleep 1
  curl -sS "http://$ADDR/metrics" >"$WORK/m0"; schedstat "$SERVER_PID" >"$WORK/s0"; s0=$(now)
  sleep $((ds - 2))
  schedstat "$SERVER_PID" >"$WORK/s1"; s1=$(now); curl -sS "http://$ADDR/metrics" >"$WORK/m1"
  wait "$wrk"
  stop_server
  pay=$(awk '/Requests\/sec/ {print $2}' "$WORK/pay.txt")
  n=$(sed -n 's/.* non200=\([0-9]*\).*/\1/p' "$WORK/pay.txt")
  secs=$(awk -v a="$s0" -v b="$s1" 'BEGIN{print b-a}')
  on=$(awk 'NR==FNR {a+=$2; next} {b+=$2} END {printf "%.6f", (b-a)/1e9}' "$WORK/s0" "$WORK/s1")
  batches=$(awk -v a="$(metric_sum "$WORK/m0" paytool_group_commit_batch_size_count)" \
    -v b="$(metric_sum "$WORK/m1" paytool_group_commit_batch_size_count)" 'BEGIN{print b-a}')
  paid=$(awk -v a="$(metric_sum "$WORK/m0" paytool_group_commit_batch_size_sum)" \
    -v b="$(metric_sum "$WORK/m1" paytool_group_commit_batch_size_sum)" 'BEGIN{print b-a}')
  # The share of the window the writer spent inside a batch (statements, commit, fsync):
  # near 1, the writer is the serial stage that sets the rate.
  committing=$(awk -v a="$(metric_sum "$WORK/m0" paytool_group_commit_seconds_sum)" \
    -v b="$(metric_sum "$WORK/m1" paytool_group_commit_seconds_sum)" -v s="$secs" \
    'BEGIN{printf "%.2f", (s>0 ? (b-a)/s : 0)}')
  printf '%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$name" "${health%.*}" "${pay%.*}" "$(ratio "$pay" "$health")" \
    "$(awk -v c="$on" -v p="$paid" 'BEGIN{printf "%.1f", (p>0 ? c/p*1e6 : 0)}')" \
    "$(awk -v p="$paid" -v b="$batches" 'BEGIN{printf "%.1f", (b>0 ? p/b : 0)}')" "$committing" \
    "$(cores_by_thread "$WORK/s0" "$WORK/s1" "$secs")" "${n:-?}" >>"$WORK/rows"
  log "$name: healthz ${health%.*}/s, payments ${pay%.*}/s"
}

: >"$WORK/rows"
for ((i = 1; i <= PAIRS; i++)); do
  if ((i % 2)); then
    run_side "$A_NAME" "$A_BIN" "${A_ENV:-}"; run_side "$B_NAME" "$B_BIN" "${B_ENV:-}"
  else
    run_side "$B_NAME" "$B_BIN" "${B_ENV:-}"; run_side "$A_NAME" "$A_BIN" "${A_ENV:-}"
  fi
done

# A refused payment is answered fast, so a run with refusals measures refusals: no
# result file for it. BENCH_SHOW_ERRORS=1 prints the first refused answers.
refused=$(awk -F'|' '$9 != "0" {n++} END {print n+0}' "$WORK/rows")
if ((refused)); then
  tr '|' '\t' <"$WORK/rows" >&2
  die "$refused run(s) had refused payments (the last column); rerun with BENCH_SHOW_ERRORS=1 to see why"
fi

median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }
medians() {   # NAME: "healthz | payments | ratio | µs"
  local f
  for f in 2 3 4 5; do
    awk -F'|' -v n="$1" -v f="$f" '$1==n {print $f}' "$WORK/rows" | median
  done | paste -sd'|' | sed 's/|/ | /g'
}
out="## $A_NAME against $B_NAME: payments on one SQLite shard, $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)
- $A_NAME: \`$A_BIN\`${A_ENV:+ with $A_ENV}; $B_NAME: \`$B_BIN\`${B_ENV:+ with $B_ENV}; HEAD $(git rev-parse --short HEAD)
- command: \`A_NAME=$A_NAME B_NAME=$B_NAME PAIRS=$PAIRS DURATION=$DURATION bench/payment_ab.sh\` (with the binaries and environments above); wrk -t1 -c64, $DURATION each

| side | healthz/s | payments/s | ÷ healthz | server CPU µs a payment | batch | writer in a batch | threads, cores on a CPU/waiting for one | non-200 |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
$(awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$WORK/rows")

Medians:

| side | healthz/s | payments/s | ÷ healthz | server CPU µs a payment |
| --- | --- | --- | --- | --- |
| $A_NAME | $(medians "$A_NAME") |
| $B_NAME | $(medians "$B_NAME") |
"
echo "$out"
mkdir -p bench/results
echo "$out" >"bench/results/payment-ab-$(date -u +%Y%m%d-%H%M%S).md"
