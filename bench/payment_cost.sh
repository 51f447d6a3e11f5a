#!/usr/bin/env bash
# What one payment costs the API (issue 14's baseline, to be read before and after each
# change): `paytool serve` on one shard, embedded SQLite (BACKEND=sqlite, the default) or
# one PostgreSQL server of its own (BACKEND=postgres: a throwaway cluster, initdb
# defaults, fsync and synchronous_commit on), then on the same cores in turn
#   1. wrk -t1 -c64 GET /healthz            (the anchor: the same server's HTTP ceiling)
#   2. wrk -t1 -c64 POST /v1/payments        (created and captured, durable, a unique
#                                             Idempotency-Key each: bench/payments.lua):
#                                             payments/s, p99, CPU a payment
#   3. the same again with `perf record` on the server (where its CPU goes: the top
#      entries, and SQLite's share), apart from 2 because perf's sampling moved the p99
#      from ~4 to ~35 ms
# and between 1 and 2 (FLOORS=1, the default) the floors between the anchor and a
# payment: the same POST /v1/payments, refused by the same server before the store
# (bench/refused.lua), wrk -t1 -c64 for FLOOR_DURATION each:
#   401  an unknown key: HTTP, routing, the key's hash, an error's body
#   400  a merchant's key and a payment's body refused for its last field (amount 0):
#        all that, and the body read and parsed; what is left of a payment past it
#        is the ledger, the store and its answer
# and then, the server stopped and the shard checkpointed, the bytes on disk per stored
# payment, idempotency records included: SQLite's file + WAL after
# PRAGMA wal_checkpoint(TRUNCATE) (through Python's sqlite3); PostgreSQL's database
# (pg_database_size: tables, indexes, TOAST) after CHECKPOINT, by table too. PostgreSQL's
# WAL is left out: after the checkpoint it is only recycled segments, reused in place.
# With PostgreSQL, its CPU per payment is reported beside the server's.
#
# Knobs: BACKEND [sqlite] or postgres; DURATION [15s] each wrk run; MERCHANTS [8];
#        TOP [15] perf entries; FLOORS [1]; FLOOR_DURATION [8s]; SKIP_BUILD [0];
#        PG_OPTS [none] extra PostgreSQL server flags for BACKEND=postgres, e.g.
#        "-c max_wal_size=8GB" (initdb defaults otherwise).
# Output: a markdown block on stdout, also in bench/results/payment-cost-<date>.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
DURATION=${DURATION:-15s}
MERCHANTS=${MERCHANTS:-8}
TOP=${TOP:-15}
FLOORS=${FLOORS:-1}
FLOOR_DURATION=${FLOOR_DURATION:-8s}
KEEP=${KEEP:-0}
check_backend
WORK=$(mktemp -d)
PG_DATAS=()
PG_OPTS=${PG_OPTS:-}
SERVER_PID=""
PERF_PID=""
cleanup() {
  local rc=$?
  set +e
  [[ -n $PERF_PID ]] && kill -INT "$PERF_PID" 2>/dev/null
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
# Every process of the PostgreSQL server (none with SQLite): its CPU is the payment's too.
pg_pids() {
  [[ $BACKEND == postgres ]] || return 0
  local main; main=$(head -1 "${PG_DIR[pg]}/postmaster.pid")
  echo "$main" $(pgrep -P "$main")
}
KEYS=$(make_merchants 1 "$ADMIN_TOKEN")
ds=$(to_seconds "$DURATION")

# CPU µs a request: jiffies A, then B, over N requests.
per_request() {   # A B N
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", (b-a)/hz*1e6/n}'
}
# CPU a request over a run: mark before it, then `cost N` prints the server's and the
# whole machine's (server, wrk, kernel, anything else) CPU µs a request for N requests.
mark() { MARK_SERVER=$(proc_jiffies "$SERVER_PID"); read -r MARK_BUSY _ < <(machine_jiffies); }
cost() {   # N
  local busy; read -r busy _ < <(machine_jiffies)
  echo "$(per_request "$MARK_SERVER" "$(proc_jiffies "$SERVER_PID")" "$1") $(per_request "$MARK_BUSY" "$busy" "$1")"
}

log "wrk -t1 -c64 -d$DURATION GET /healthz"
mark
timeout $((ds + 60)) wrk -t1 -c64 -d"$DURATION" --latency "http://$ADDR/healthz" >"$WORK/healthz.txt"
health_rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/healthz.txt")
health_n=$(awk '/requests in/ {print $1}' "$WORK/healthz.txt")
read -r health_us health_all_us < <(cost "$health_n")

# A floor: bench/refused.lua with Bearer key $2; prints "req/s server-µs machine-µs".
floor() {   # NAME KEY
  local n
  log "wrk -t1 -c64 -d$FLOOR_DURATION POST /v1/payments refused before the store: $1"
  mark
  BENCH_KEY=$2 timeout $(($(to_seconds "$FLOOR_DURATION") + 60)) \
    wrk -t1 -c64 -d"$FLOOR_DURATION" -s "$ROOT/bench/refused.lua" "http://$ADDR" >"$WORK/floor-$1.txt" 2>&1
  n=$(sed -n 's/.*BENCH requests=\([0-9]*\).*/\1/p' "$WORK/floor-$1.txt")
  # Every answer must be the refusal asked for: wrk counts answers of 400 and above.
  [[ -n $n && $(sed -n 's/.* non200=\([0-9]*\).*/\1/p' "$WORK/floor-$1.txt") == "$n" ]] ||
    die "the $1 floor got answers other than refusals: $(tail -3 "$WORK/floor-$1.txt")"
  echo "$(awk '/Requests\/sec/ {print $2}' "$WORK/floor-$1.txt") $(cost "$n")"
}
# A row of the table: NAME REQ/S SERVER-µs MACHINE-µs.
cost_row() {
  echo "| $1 | $(th "${2%.*}") | $(ratio "$2" "$health_rps") | $3 µs | $4 µs |"
}
floor_rows=""
if [[ $FLOORS == 1 ]]; then
  read -r f401 f401_us f401_all_us < <(floor 401 "sk_test_unknown")
  read -r f400 f400_us f400_all_us < <(floor 400 "${KEYS%%,*}")
  floor_rows="
$(cost_row "POST /v1/payments, 401: an unknown key" "$f401" "$f401_us" "$f401_all_us")
$(cost_row "POST /v1/payments, 400: the body parsed, refused" "$f400" "$f400_us" "$f400_all_us")"
fi

log "wrk -t1 -c64 -d$DURATION POST /v1/payments"
cpu0=$(proc_jiffies "$SERVER_PID")
pg0=$(procs_jiffies $(pg_pids))
thread_jiffies "$SERVER_PID" >"$WORK/threads0"
read -r busy0 total0 < <(machine_jiffies)
t0=$(date +%s.%N)
wrk_payments "cost-$(date +%s)" "$DURATION" "$WORK/pay.txt"
t1=$(date +%s.%N)
read -r busy1 total1 < <(machine_jiffies)
thread_jiffies "$SERVER_PID" >"$WORK/threads1"
cpu1=$(proc_jiffies "$SERVER_PID")
# Backends that started during the run count from zero (they had no CPU before it).
pg1=$(procs_jiffies $(pg_pids))

log "wrk -t1 -c64 -d$DURATION POST /v1/payments again, perf record on the server"
# DWARF call graphs (Rust and SQLite keep no frame pointers), for SQLite's share below.
perf record -F 199 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$WORK/perf.data" >/dev/null 2>&1 &
PERF_PID=$!
wrk_payments "cost-perf-$(date +%s)" "$DURATION" "$WORK/pay-perf.txt"
kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true; PERF_PID=""
pay_rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/pay.txt")
pay_n=$(sed -n 's/.*BENCH requests=\([0-9]*\).*/\1/p' "$WORK/pay.txt")
non200=$(sed -n 's/.* non200=\([0-9]*\).*/\1/p' "$WORK/pay.txt")
p99_us=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' "$WORK/pay.txt")
cpu_us=$(per_request "$cpu0" "$cpu1" "$pay_n")
all_us=$(per_request "$busy0" "$busy1" "$pay_n")
pg_cpu_us=$(per_request "$pg0" "$pg1" "$pay_n")

stop_server
by_table=""
if [[ $BACKEND == postgres ]]; then
  pg_sql pg paytool "CHECKPOINT" >/dev/null
  stored=$(pg_sql pg paytool "SELECT count(*) FROM payments")
  bytes=$(pg_sql pg paytool "SELECT pg_database_size(current_database())")
  by_table=$(pg_sql pg paytool "SELECT relname, pg_total_relation_size(oid) FROM pg_class \
    WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY 2 DESC LIMIT 6" |
    awk -F'|' -v n="$stored" '{printf "%s %.0f, ", $1, $2 / n}' | sed 's/, $//')
  by_table="; by table (with its indexes and TOAST), bytes a payment: $by_table"
else
python3 - "$DATA" >"$WORK/disk.txt" <<'PY'
import glob, os, sqlite3, sys
data = sys.argv[1]
payments = 0
for f in sorted(glob.glob(os.path.join(data, "shard-*.db"))):
    c = sqlite3.connect(f)
    payments += c.execute("SELECT count(*) FROM payments").fetchone()[0]
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(data, "shard-*.db*")))
print(payments, size)
PY
read -r stored bytes <"$WORK/disk.txt"
fi
perf report -i "$WORK/perf.data" --no-children --no-inline -g none --sort dso,sym >"$WORK/perf.txt" 2>/dev/null
# SQLite's share of the server's CPU: the samples (weighted by their periods) with a
# SQLite frame anywhere on the stack, the kernel's work for its writes and syncs included.
sqlite_row=""
if [[ $BACKEND == sqlite ]]; then
  sqlite_share=$(perf script --no-inline -i "$WORK/perf.data" -F comm,period,ip,sym 2>/dev/null | awk '
    /^[^ \t]/ { if (n) { tot += w; if (hit) sq += w }; w = $NF; hit = 0; n = 1; next }
    /sqlite3|pager[A-Z]|wal[A-Z]|[Bb]tree|Vdbe|pcache/ { hit = 1 }
    END { if (n) { tot += w; if (hit) sq += w }; if (tot) printf "%.0f", sq / tot * 100 }')
  sqlite_row="
| SQLite's share of the server's CPU in the perf run (a SQLite frame on the stack) | ${sqlite_share:-?}%, about $(awk -v s="${sqlite_share:-0}" -v c="$cpu_us" 'BEGIN{printf "%.0f", s*c/100}') µs a payment | |"
fi
top=$(grep -E '^ +[0-9.]+% ' "$WORK/perf.txt" | sed -n "1,${TOP}p" | sed -E 's/^ +//; s/ +/ /g' |
  awk '{printf "| %s | %s |\n", $1, substr($0, index($0,$2))}')

pg_row=""
[[ $BACKEND == postgres ]] && pg_row="
| PostgreSQL's CPU per payment (all its processes) | $pg_cpu_us µs | |"
out="## What one payment costs the API ($BACKEND), $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r); $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')
- paytool $BUILT_FROM; command: \`${PG_OPTS:+PG_OPTS=\"$PG_OPTS\" }BACKEND=$BACKEND DURATION=$DURATION MERCHANTS=$MERCHANTS bench/payment_cost.sh\`
- $STORE; wrk -t1 -c64 for $DURATION each, on the same 2 cores as the server

| figure | value | goal (issue 14) |
| --- | --- | --- |
| GET /healthz req/s (anchor) | $(th "${health_rps%.*}") | |
| POST /v1/payments payments/s (created + captured) | $(th "${pay_rps%.*}") (p99 $(fmt "$(awk -v u="$p99_us" 'BEGIN{print u/1000}')" 1) ms, non-200: ${non200:-?}) | |
| payments/s ÷ healthz req/s | **$(ratio "$pay_rps" "$health_rps")** | ≥ 0.5, p99 < 10 ms |
| server CPU per payment | $cpu_us µs | |$pg_row$sqlite_row
| the server's threads, cores busy in that run | $(threads_busy "$WORK/threads0" "$WORK/threads1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')") | |
| the machine's cores busy in that run (of $(nproc)) | $(awk -v a="$busy0" -v b="$busy1" -v ta="$total0" -v tb="$total1" -v n="$(nproc)" 'BEGIN{printf "%.2f", (b-a)/(tb-ta)*n}') | |
| bytes on disk per stored payment (after a checkpoint) | **$(awk -v b="$bytes" -v n="$stored" 'BEGIN{printf "%.0f", b/n}')** ($(th "$bytes") bytes, $(th "$stored") payments$by_table) | ≤ 600 |

What a request costs, from the anchor to a payment (the payments row is the first
payments run; a request's machine CPU is every process's, wrk's and the kernel's
included, over the requests answered, so a rate is the cores kept busy divided by it:
for payments/s ÷ healthz ≥ 0.5, a payment may use at most twice the anchor's machine
CPU, and only if it keeps the cores as busy):

| request | req/s | ÷ healthz | server CPU a request | machine CPU a request |
| --- | --- | --- | --- | --- |
$(cost_row "GET /healthz (the anchor)" "$health_rps" "$health_us" "$health_all_us")$floor_rows
$(cost_row "POST /v1/payments, a payment" "$pay_rps" "$cpu_us" "$all_us")

Where the server's CPU went during the second payments run (perf, self time, top $TOP):

| share | object and symbol |
| --- | --- |
$top
"
echo "$out"
mkdir -p bench/results
suffix=""
[[ $BACKEND == postgres ]] && suffix="-postgres"
echo "$out" >"bench/results/payment-cost$suffix-$(date -u +%Y%m%d-%H%M%S).md"
