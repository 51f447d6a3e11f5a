#!/usr/bin/env bash
# Benchmark `paytool shard move` (issue 9): profiles/shards/two.toml -> three.toml, on three
# fresh PostgreSQL servers (one per shard), in one invocation on one machine:
#   1. copy speed: the move's initial copy, rows/s (rows ÷ copy_seconds of its JSON report,
#      per range and overall), against the anchor measured just before it on the same rows
#      between the same servers: `psql -c "COPY (SELECT * FROM t WHERE bucket BETWEEN a AND
#      b) TO STDOUT" | psql -c "COPY t FROM STDIN"`, the six merchant tables one after the
#      other, into a scratch database on the target server with the shard's schema
#      (`pg_dump --schema-only` of the source shard, indexes included).   goal >= 0.5
#      No API load during either: the same rows, counted on both sides.
#   2. fences under load: a second, separate move two -> three (fresh databases on the same
#      servers, seeded the same way) while one `paytool serve --layout two.toml` instance
#      takes payments from two wrk processes at once, one for merchants in the moving
#      buckets and one for merchants outside them. Reported: the fences the move reports
#      (fences_ms, fence_ms_max) and, per group, p50/p99/max latency and errors in a window
#      BEFORE the move and a window DURING it (wrk started just before the move, stopped by
#      SIGINT when it returns). The longest latency a moving merchant saw during the move is
#      the longest write fence any merchant saw (goal < 1 s); outside merchants: 0 errors,
#      p99 before vs during.
#   3. the alternative not taken: what a change log written in the same transaction as
#      each change would cost the write path (pgbench, the writer's UNNEST insert with and
#      without as many change-log rows).
# Data is seeded through the API (wrk + payments.lua, stopped once the shards hold
# SEED_PAYMENTS payments): the rows, ledger and idempotency entries a real shard holds,
# consistent for the ledger audit the move runs. Merchants' buckets are read back from the
# shards (SELECT id, bucket FROM merchants).
# PostgreSQL: fresh clusters, initdb defaults + fsync=on, synchronous_commit=on,
# wal_level=logical and the replication settings src/services/postgres.rs uses,
# 127.0.0.1 only.
#
# Usage: bench/shard_move.sh        (as root, or a user who can run PostgreSQL)
#
# Knobs (env vars), defaults in brackets:
#   SEED_PAYMENTS [200000]  payments seeded before each move (through the API)
#   SEED_MERCHANTS [256]    merchants they are spread over (round-robin)
#   SEED_CONNS [128]        wrk -c of the seeding;  SEED_MAX [1200]  its bound, seconds
#   LOAD_MERCHANTS [16]     merchants in each load group (moving / outside), part 2
#   CONNS [32]              wrk -c of EACH of the two load wrk processes, part 2
#   THREADS [1]             wrk -t of each load wrk process
#   LOAD_DURATION [20s]     the window before the move (the window during it lasts as
#                           long as the move)
#   WARMUP [3s]             unmeasured load before the window before
#   MOVE_MAX [1800]         bound on each `shard move`, seconds
#   PAYTOOL_BIN []          use this paytool binary as it is (no build; e.g.
#                           target/debug/paytool for a try-out: figures then say debug)
#   BUILD_REF [HEAD]        git ref built from a clean `git archive` into target/bench-ref;
#                           BUILD_REF= (empty) builds the working tree instead
#   SKIP_BUILD [0]          1 uses the binary already built
#   SKIP_CHANGELOG [0]      1 skips part 3 (a change log's write cost, pgbench)
#   PG_CLIENTS [8]  ROWS_DURATION [15]  ROWS_PER_TX [100]   part 3's pgbench runs
#   BENCH_TMP [/tmp]        where the clusters go (same disk matters)
#   KEEP [0]                1 keeps the clusters' files and logs after the run
#   WAIT_QUIET [600]        before each measured run, wait up to this many seconds for the
#                           machine to be idle (other processes < 0.3 cores); then measure
#                           anyway and say so in the results; 0 disables
# The binary is copied into the run's directory first, so a build finishing meanwhile
# cannot swap it mid-run.
# Quick try (about 30 s with a debug binary; checks the script, measures nothing):
#   PAYTOOL_BIN=target/debug/paytool WAIT_QUIET=0 SEED_PAYMENTS=4000 SEED_MERCHANTS=32 \
#   SEED_CONNS=32 LOAD_MERCHANTS=8 CONNS=8 LOAD_DURATION=5s WARMUP=1s bench/shard_move.sh
#
# Output: a markdown results block on stdout, also written to
# bench/results/shard-move-<date>.md. Everything listens on 127.0.0.1 only; every process
# is bounded by `timeout`; a trap stops every API server and PostgreSQL cluster this
# script started.
set -euo pipefail
export LC_NUMERIC=C     # a decimal point in $EPOCHREALTIME and awk's output

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

SEED_PAYMENTS=${SEED_PAYMENTS:-200000}
SEED_MERCHANTS=${SEED_MERCHANTS:-256}
SEED_CONNS=${SEED_CONNS:-128}
SEED_MAX=${SEED_MAX:-1200}
LOAD_MERCHANTS=${LOAD_MERCHANTS:-16}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
LOAD_DURATION=${LOAD_DURATION:-20s}
WARMUP=${WARMUP:-3s}
MOVE_MAX=${MOVE_MAX:-1800}
PAYTOOL_BIN=${PAYTOOL_BIN:-}
BUILD_REF=${BUILD_REF-HEAD}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_CHANGELOG=${SKIP_CHANGELOG:-0}
PG_CLIENTS=${PG_CLIENTS:-8}
ROWS_DURATION=${ROWS_DURATION:-15}
ROWS_PER_TX=${ROWS_PER_TX:-100}
BENCH_TMP=${BENCH_TMP:-/tmp}
KEEP=${KEEP:-0}
WAIT_QUIET=${WAIT_QUIET:-600}
GOAL_COPY=0.5
GOAL_FENCE_MS=1000
FROM_LAYOUT=profiles/shards/two.toml
TO_LAYOUT=profiles/shards/three.toml
SHARDS=(s0 s1 s2)           # one PostgreSQL server each; URLs from PAYTOOL_SHARD_S<i>_URL
FROM_SHARDS=(s0 s1)         # the shards FROM_LAYOUT names
TABLES=(merchants payments postings refunds idempotency balances)
SERVE_MAX=10800             # bound on an API server's life, seconds

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d "$BENCH_TMP/paytool-shardmove.XXXXXX")
chmod 755 "$WORK"      # the postgres user writes clusters under it
SERVER_PID=""
AS_PG=()
PG_DATAS=()            # every cluster started, stopped by the trap
WRK_PIDS=()            # load generators running in the background
cleanup() {
  local rc=$? p
  set +e
  for p in "${WRK_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  end_process "$SERVER_PID"
  stop_clusters
  drop_work
  exit $rc
}
trap_cleanup

# ---------------------------------------------------------------- tools, build
load_tools
find_postgres
PSQL=$PGBIN/psql
PG_DUMP=$PGBIN/pg_dump
paytool_binary
"$BIN" shard move --help >/dev/null 2>&1 || die "$BIN has no \`shard move\`"
PGV=$("$PGBIN/postgres" --version | awk '{print $3}')

# ---------------------------------------------------------------- PostgreSQL clusters
PG_OPTS="-c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c wal_level=logical"
PG_OPTS+=" -c max_worker_processes=16 -c max_logical_replication_workers=8"
PG_OPTS+=" -c max_sync_workers_per_subscription=4 -c wal_retrieve_retry_interval=200ms"
PG_OPTS+=" -c max_replication_slots=16 -c max_wal_senders=16"
for s in "${SHARDS[@]}"; do pg_start "$s"; done

# The env naming every shard's database DB, as the layouts read it.
URLS=()
shard_urls() {
  local s
  URLS=()
  for s in "${SHARDS[@]}"; do
    URLS+=("PAYTOOL_SHARD_${s^^}_URL=postgres://postgres@127.0.0.1:${PG_PORT[$s]}/$1")
  done
}

STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$ROOT/bench/results"
RESULTS=$ROOT/bench/results/shard-move-$STAMP.md
FLAGS=(); QUIET_NOTES=()
Q=""
join_by() { local sep=$1 out="" x; shift; for x in "$@"; do out+="${out:+$sep}$x"; done; echo "$out"; }

# Buckets whose owner differs between the two layouts (the ones a move takes along).
mapfile -t MOVING_LIST < <(awk -F'"' 'FNR == 1 {f++}
  /^buckets *=/ {split($2, r, "-"); lo = r[1]; hi = r[2]}
  /^shard *=/   {for (b = lo; b <= hi; b++) o[f, b] = $2}
  END {for (b = 0; b < 1024; b++) if (o[1, b] != o[2, b]) print b}' "$FROM_LAYOUT" "$TO_LAYOUT")
MOVING_RANGES=$(printf '%s\n' "${MOVING_LIST[@]}" |
  awk 'NR == 1 {lo = $1; p = $1; next} $1 != p + 1 {printf "%s%d-%d", s, lo, p; s = ", "; lo = $1} {p = $1}
       END {if (NR) printf "%s%d-%d", s, lo, p}')
log "buckets that move $FROM_LAYOUT -> $TO_LAYOUT: $MOVING_RANGES"

# ---------------------------------------------------------------- API server, merchants, seed
ADMIN_TOKEN=adm_bench_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
ADDR=""
start_server() {   # LABEL DB: paytool serve --layout FROM_LAYOUT on the shards' database DB
  local label=$1 db=$2
  shard_urls "$db"
  PAYTOOL_ADMIN_TOKEN=$ADMIN_TOKEN timeout "$SERVE_MAX" env "${URLS[@]}" "$BIN" serve \
    --layout "$FROM_LAYOUT" --listen 127.0.0.1:0 --data-dir "$WORK/data-$label" \
    >"$WORK/serve-$label.out" 2>"$WORK/serve-$label.err" &
  SERVER_PID=$!
  await_listening "$SERVER_PID" "$WORK/serve-$label.out" "$WORK/serve-$label.err"
  log "paytool serve --layout $FROM_LAYOUT ($label, database $db) on $ADDR"
}

# A fresh database DB on every server, the FROM layout applied to it.
new_shards() {   # LABEL DB
  local label=$1 db=$2 s
  for s in "${SHARDS[@]}"; do pg_sql "$s" postgres "CREATE DATABASE $db" >/dev/null; done
  shard_urls "$db"
  timeout 120 env "${URLS[@]}" "$BIN" shard apply --layout "$FROM_LAYOUT" >"$WORK/apply-$label.log" 2>&1 ||
    { cat "$WORK/apply-$label.log" >&2; die "shard apply failed"; }
}

# Create N merchants on http://$ADDR; append "id key" lines to FILE.
create_merchants() {   # N FILE
  local n=$1 file=$2 i json id key
  for ((i = 1; i <= n; i++)); do
    json=$(curl -sS --max-time 10 -X POST "http://$ADDR/v1/merchants" \
      -H "Authorization: Bearer $ADMIN_TOKEN" -d "{\"name\":\"move-bench-$i\"}")
    read -r id key < <(jq -r '"\(.id) \(.secret_key)"' <<<"$json")
    [[ $key == sk_* ]] || die "merchant creation failed: $json"
    echo "$id $key" >>"$file"
  done
}
# "id bucket moving(0|1) key" per merchant of FILE.ids, buckets as the shards record them.
classify_merchants() {   # DB FILE
  local db=$1 file=$2 s
  for s in "${FROM_SHARDS[@]}"; do pg_sql "$s" "$db" "SELECT id || ' ' || bucket FROM merchants"; done >"$file.buckets"
  awk -v moving="${MOVING_LIST[*]}" 'BEGIN {n = split(moving, m, " "); for (i = 1; i <= n; i++) mv[m[i]] = 1}
    FNR == NR {b[$1] = $2; next}
    ($1 in b) {print $1, b[$1], (b[$1] in mv) ? 1 : 0, $2}' "$file.buckets" "$file.ids" >"$file"
  (( $(wc -l <"$file") == $(wc -l <"$file.ids") )) || die "some merchants are on no shard"
}
# Merchants for a part: SEED_MERCHANTS, then more until each load group has LOAD_MERCHANTS.
setup_merchants() {   # DB FILE
  local db=$1 file=$2 moving outside tries=0
  : >"$file.ids"
  create_merchants "$SEED_MERCHANTS" "$file.ids"
  while :; do
    classify_merchants "$db" "$file"
    moving=$(awk '$3 == 1' "$file" | wc -l); outside=$(awk '$3 == 0' "$file" | wc -l)
    (( moving >= LOAD_MERCHANTS && outside >= LOAD_MERCHANTS )) && break
    tries=$((tries + 1)); (( tries < 20 )) || die "could not find $LOAD_MERCHANTS merchants in each group"
    create_merchants "$LOAD_MERCHANTS" "$file.ids"
  done
  log "$(wc -l <"$file") merchants: $moving in the moving buckets, $outside outside"
}
# Keys of the merchants of FILE in the moving buckets (1), outside them (0) or all, at
# most N, comma-separated.
keys_of() { awk -v g="$1" -v n="${3:-1000000}" '(g == "all" || $3 == g) && c++ < n {print $4}' "$2" | paste -sd, -; }

# wrk stopping each thread after its share of answers (payments.lua otherwise).
cat >"$WORK/seed.lua" <<'EOF'
-- bench/payments.lua, each thread stopping after BENCH_LIMIT answers.
dofile(os.getenv("BENCH_LUA"))
local payments_response = response
local limit = tonumber(os.getenv("BENCH_LIMIT")) or 0
local answered = 0
function response(status, headers, body)
  payments_response(status, headers, body)
  answered = answered + 1
  if limit > 0 and answered >= limit then wrk.thread:stop() end
end
EOF
SEED_THREADS=2
# SEED_PAYMENTS payments through the API, over every merchant of FILE. wrk's threads stop
# after their share of answers, but wrk itself waits out its -d: the shards' payment count
# is polled, and wrk is stopped (SIGINT) once it reaches SEED_PAYMENTS or stops growing.
paid() { local s n=0; for s in "${FROM_SHARDS[@]}"; do n=$((n + $(pg_sql "$s" "$1" "SELECT count(*) FROM payments"))); done; echo "$n"; }
seed() {   # LABEL FILE DB
  local label=$1 file=$2 db=$3 keys t0 t1 line n=0 last=-1 still=0 pid
  keys=$(keys_of all "$file")
  log "seeding $SEED_PAYMENTS payments over $(wc -l <"$file") merchants (wrk -c$SEED_CONNS, bound ${SEED_MAX}s)"
  t0=$EPOCHREALTIME
  BENCH_KEYS=$keys BENCH_RUN=s$STAMP-$label BENCH_LUA=$ROOT/bench/payments.lua \
    BENCH_LIMIT=$(( (SEED_PAYMENTS + SEED_THREADS - 1) / SEED_THREADS )) \
    timeout $((SEED_MAX + 60)) wrk -t"$SEED_THREADS" -c"$SEED_CONNS" -d"${SEED_MAX}s" --timeout 10s \
    -s "$WORK/seed.lua" "http://$ADDR" >"$WORK/seed-$label.txt" 2>"$WORK/seed-$label.err" &
  pid=$!; WRK_PIDS=("$pid")
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.5
    n=$(paid "$db")
    (( n >= SEED_PAYMENTS )) && break
    if (( n == last )); then still=$((still + 1)); else still=0; fi
    (( n > 0 && still >= 6 )) && { FLAGS+=("seeding $label: the payment count stopped at $n"); break; }
    last=$n
  done
  t1=$EPOCHREALTIME
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" || log "seeding wrk exited with status $?"
  WRK_PIDS=()
  line=$(grep '^BENCH ' "$WORK/seed-$label.txt") || { cat "$WORK/seed-$label.txt" "$WORK/seed-$label.err" >&2; die "seeding printed no BENCH line"; }
  n=$(paid "$db")
  SEEDED[$label]=$n
  SEED_RATE[$label]=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')
  log "seeded $label: $n payments in the shards, ${SEED_RATE[$label]}/s ($line)"
  grep -q ' non200=0 ' <<<"$line" || FLAGS+=("seeding $label: $line; first: $(head -c 300 "$WORK/seed-$label.err" | tr '\n' ' ')")
}
declare -A SEEDED SEED_RATE

# Clean tables (no dead rows from the balances' updates) and no checkpoint debt, so the
# anchor and the move read the same state.
settle() {   # DB
  local s
  for s in "${FROM_SHARDS[@]}"; do pg_sql "$s" "$1" "VACUUM ANALYZE" >/dev/null; done
  for s in "${SHARDS[@]}"; do pg_sql "$s" postgres "CHECKPOINT" >/dev/null; done
}

# Rows per merchant table on shard NAME of database DB, "table rows" lines.
table_rows() {   # NAME DB
  local t
  for t in "${TABLES[@]}"; do echo "$t $(pg_sql "$1" "$2" "SELECT count(*) FROM $t")"; done
}

# Replication leftovers of a finished move on every server: slots, publications,
# subscriptions. Flags any.
check_leftovers() {   # LABEL DB
  local s left
  for s in "${SHARDS[@]}"; do
    left=$(pg_sql "$s" "$2" "SELECT string_agg(x, ', ') FROM (
      SELECT 'slot ' || slot_name AS x FROM pg_replication_slots
      UNION ALL SELECT 'publication ' || pubname FROM pg_publication
      UNION ALL SELECT 'subscription ' || subname FROM pg_subscription) l")
    [[ -z $left ]] || FLAGS+=("$1: after the move, $s still has $left")
  done
}

# shard move --layout TO_LAYOUT --output json; JSON in FILE.json, its stderr timestamped
# (seconds since it started) in FILE.log. Sets MOVE_RC.
run_move() {   # LABEL DB FILE
  local label=$1 db=$2 file=$3 t0
  shard_urls "$db"
  t0=$EPOCHREALTIME
  MOVE_STARTED=$t0
  set +e
  timeout "$MOVE_MAX" env "${URLS[@]}" "$BIN" shard move --layout "$TO_LAYOUT" --output json \
    2>&1 >"$file.json" | while IFS= read -r l; do
      printf '+%7.3f s  %s\n' "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" "$l"
    done >"$file.log"
  MOVE_RC=${PIPESTATUS[0]}
  set -e
  MOVE_SECONDS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
  if (( MOVE_RC != 0 )) || ! jq -e .ranges "$file.json" >/dev/null 2>&1; then
    cat "$file.log" >&2
    FLAGS+=("$label: \`shard move\` exited with status $MOVE_RC after ${MOVE_SECONDS}s: $(tail -3 "$file.log" | tr '\n' ' ' | head -c 600)")
    return 1
  fi
  log "$label: shard move done in ${MOVE_SECONDS}s, longest fence $(jq .fence_ms_max "$file.json") ms"
}

# ================================================================ 1. copy speed
DB_A=paytool_a
log "part 1: copy speed (database $DB_A)"
new_shards a "$DB_A"
start_server a "$DB_A"
setup_merchants "$DB_A" "$WORK/merchants-a"
seed a "$WORK/merchants-a" "$DB_A"
stop_server
settle "$DB_A"

shard_urls "$DB_A"
timeout 300 env "${URLS[@]}" "$BIN" shard move --layout "$TO_LAYOUT" --dry-run --output json \
  >"$WORK/plan-a.json" 2>"$WORK/plan-a.err" || { cat "$WORK/plan-a.err" >&2; die "shard move --dry-run failed"; }
mapfile -t PLAN < <(jq -r '.ranges[] | "\(.first) \(.last) \(.source) \(.target) \(.rows)"' "$WORK/plan-a.json")
(( ${#PLAN[@]} > 0 )) || die "the dry run plans no range: $(cat "$WORK/plan-a.json")"
EXPECTED_FENCE=$(jq .expected_fence_ms "$WORK/plan-a.json")

# The anchor: per range, the six tables piped COPY TO -> COPY FROM, one after the other.
declare -A ANCHOR_SECS ANCHOR_ROWS ANCHOR_TABLE
ANCHOR_ROWS_TABLE=()
for p in "${PLAN[@]}"; do
  read -r first last src dst rows <<<"$p"
  key=$first-$last
  pg_sql "$dst" postgres "CREATE DATABASE anchor" >/dev/null
  timeout 300 "$PG_DUMP" -h 127.0.0.1 -p "${PG_PORT[$src]}" -U postgres --schema-only --no-owner \
    --no-publications --no-subscriptions "$DB_A" |
    timeout 300 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PG_PORT[$dst]}" -U postgres -d anchor \
      >"$WORK/anchor-schema-$key.log" 2>&1 || { cat "$WORK/anchor-schema-$key.log" >&2; die "anchor schema failed"; }
  for s in "$src" "$dst"; do pg_sql "$s" postgres "CHECKPOINT" >/dev/null; done
  quiet_check "anchor $key"
  log "anchor: buckets $key, $src -> $dst ($rows rows planned), COPY | COPY over TCP, six tables one after the other"
  t0=$EPOCHREALTIME; total=0; parts=()
  for t in "${TABLES[@]}"; do
    ts=$EPOCHREALTIME
    out=$(timeout 3600 "$PSQL" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PG_PORT[$src]}" -U postgres -d "$DB_A" \
            -c "COPY (SELECT * FROM $t WHERE bucket BETWEEN $first AND $last) TO STDOUT" |
          timeout 3600 "$PSQL" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PG_PORT[$dst]}" -U postgres -d anchor \
            -c "COPY $t FROM STDIN") || die "anchor COPY of $t failed: $out"
    n=${out#COPY }
    [[ $n =~ ^[0-9]+$ ]] || die "anchor COPY of $t said: $out"
    total=$((total + n))
    ANCHOR_TABLE[$key-$t]=$n
    parts+=("$t $n rows $(awk -v a="$ts" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}') s")
  done
  ANCHOR_SECS[$key]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", b-a}')
  ANCHOR_ROWS[$key]=$total
  ANCHOR_ROWS_TABLE+=("| $key | $src → $dst | $(join_by '; ' "${parts[@]}") |")
  log "anchor $key: $total rows in ${ANCHOR_SECS[$key]} s ($(awk -v n="$total" -v s="${ANCHOR_SECS[$key]}" 'BEGIN{printf "%.0f", n/s}') rows/s)"
  (( total == rows )) || FLAGS+=("anchor $key: $total rows copied, the dry run counted $rows")
  pg_sql "$dst" postgres "DROP DATABASE anchor" >/dev/null
done

settle "$DB_A"
quiet_check "move 1 (copy speed)"
log "move 1: shard move --layout $TO_LAYOUT (no load)"
MOVE1_OK=1
run_move "move 1" "$DB_A" "$WORK/move-a" || MOVE1_OK=0
MOVE1_SECONDS=$MOVE_SECONDS
COPY_ROWS=()
TOTAL_ROWS=0; TOTAL_COPY_S=0; TOTAL_ANCHOR_S=0
if (( MOVE1_OK )); then
  check_leftovers "move 1" "$DB_A"
  while read -r first last src dst rows cs crs fences cleaned audited; do
    key=$first-$last
    a_rows=${ANCHOR_ROWS[$key]:-0}; a_s=${ANCHOR_SECS[$key]:-0}
    a_rps=$(awk -v n="$a_rows" -v s="$a_s" 'BEGIN{ if (s>0) printf "%.0f", n/s; else print 0 }')
    m_rps=$(awk -v n="$rows" -v s="$cs" 'BEGIN{ if (s>0) printf "%.0f", n/s; else print 0 }')
    COPY_ROWS+=("| $key | $src → $dst | $(th "$rows") | $(fmt "$cs" 2) | **$(th "$m_rps")** | $(th "$a_rows") | $(fmt "$a_s" 2) | $(th "$a_rps") | **$(ratio "$m_rps" "$a_rps")** | $fences | $(th "$cleaned") | $audited |")
    TOTAL_ROWS=$((TOTAL_ROWS + rows))
    TOTAL_COPY_S=$(awk -v a="$TOTAL_COPY_S" -v b="$cs" 'BEGIN{print a+b}')
    TOTAL_ANCHOR_S=$(awk -v a="$TOTAL_ANCHOR_S" -v b="$a_s" 'BEGIN{print a+b}')
    (( rows == a_rows )) || FLAGS+=("move 1 $key: the move reports $rows rows, the anchor copied $a_rows")
    # Per table: what the move's check counted before the switch against the anchor's COPY.
    while read -r t n; do
      [[ ${ANCHOR_TABLE[$key-$t]:-x} == "$n" ]] ||
        FLAGS+=("move 1 $key $t: the move's check counted $n rows, the anchor copied ${ANCHOR_TABLE[$key-$t]:-?}")
    done < <(jq -r --argjson f "$first" '.ranges[] | select(.first == $f) | .checked_before_switch[] | "\(.table) \(.rows)"' "$WORK/move-a.json")
    awk -v a="$m_rps" -v b="$crs" 'BEGIN{exit !(b > 0 && (a/b > 1.01 || a/b < 0.99))}' &&
      FLAGS+=("move 1 $key: rows ÷ copy_seconds = $m_rps, the report's copy_rows_per_s = $(fmt "$crs")")
  done < <(jq -r '.ranges[] | "\(.first) \(.last) \(.source) \(.target) \(.rows) \(.copy_seconds) \(.copy_rows_per_s) \(.fences_ms | join(",")) \(.cleaned_rows) \(.audited_payments)"' "$WORK/move-a.json")
  TOTAL_ANCHOR_ROWS=0; for k in "${!ANCHOR_ROWS[@]}"; do TOTAL_ANCHOR_ROWS=$((TOTAL_ANCHOR_ROWS + ANCHOR_ROWS[$k])); done
  M_ALL=$(awk -v n="$TOTAL_ROWS" -v s="$TOTAL_COPY_S" 'BEGIN{ if (s>0) printf "%.0f", n/s; else print 0 }')
  A_ALL=$(awk -v n="$TOTAL_ANCHOR_ROWS" -v s="$TOTAL_ANCHOR_S" 'BEGIN{ if (s>0) printf "%.0f", n/s; else print 0 }')
  COPY_RATIO=$(ratio "$M_ALL" "$A_ALL")
  COPY_ROWS+=("| **all** | | $(th "$TOTAL_ROWS") | $(fmt "$TOTAL_COPY_S" 2) | **$(th "$M_ALL")** | $(th "$TOTAL_ANCHOR_ROWS") | $(fmt "$TOTAL_ANCHOR_S" 2) | $(th "$A_ALL") | **$COPY_RATIO** | max $(jq .fence_ms_max "$WORK/move-a.json") | | |")
  log "copy: move $M_ALL rows/s, anchor $A_ALL rows/s, ratio $COPY_RATIO"
else
  COPY_RATIO="-"
fi
# Where the rows are now (the move's end state).
ROWS_AFTER_A=()
for s in "${SHARDS[@]}"; do ROWS_AFTER_A+=("$s $(pg_sql "$s" "$DB_A" "SELECT count(*) FROM payments" 2>/dev/null || echo -) payments"); done
for s in "${SHARDS[@]}"; do
  pg_sql "$s" postgres "DROP DATABASE $DB_A" >/dev/null 2>&1 || FLAGS+=("could not drop $DB_A on $s after move 1 (a replication slot left?)")
done

# ================================================================ 2. fences under load
DB_B=paytool_b
log "part 2: fences under load (database $DB_B)"
new_shards b "$DB_B"
start_server b "$DB_B"
setup_merchants "$DB_B" "$WORK/merchants-b"
seed b "$WORK/merchants-b" "$DB_B"
settle "$DB_B"
KEYS_MOVING=$(keys_of 1 "$WORK/merchants-b" "$LOAD_MERCHANTS")
KEYS_OUTSIDE=$(keys_of 0 "$WORK/merchants-b" "$LOAD_MERCHANTS")

# Two wrk processes, one per group, in the background: WRK_PIDS, outputs $WORK/wrk-WINDOW-GROUP.
start_load() {   # WINDOW DURATION_SECONDS
  local window=$1 secs=$2 group keys
  WRK_PIDS=()
  for group in moving outside; do
    keys=$KEYS_MOVING; [[ $group == outside ]] && keys=$KEYS_OUTSIDE
    BENCH_KEYS=$keys BENCH_RUN=r$STAMP-$window-$group timeout $((secs + 60)) \
      wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 10s --latency \
      -s "$ROOT/bench/payments.lua" "http://$ADDR" >"$WORK/wrk-$window-$group.txt" 2>"$WORK/wrk-$window-$group.err" &
    WRK_PIDS+=($!)
  done
}
wait_load() {
  local p
  for p in "${WRK_PIDS[@]}"; do wait "$p" || log "wrk exited with status $?"; done
  WRK_PIDS=()
}
LOAD_ROWS=()
declare -A P99 ERRS MAXMS
load_row() {   # WINDOW GROUP
  local window=$1 group=$2 f=$WORK/wrk-$1-$2 line kv
  line=$(grep '^BENCH ' "$f.txt") || { cat "$f.txt" "$f.err" >&2; die "wrk $window $group printed no BENCH line"; }
  declare -A r=()
  for kv in ${line#BENCH }; do r[${kv%%=*}]=${kv#*=}; done
  local sock=$(( r[errors_connect] + r[errors_read] + r[errors_write] + r[errors_timeout] ))
  local secs; secs=$(awk -v d="${r[duration_us]}" 'BEGIN{print d/1e6}')
  local ok_rps; ok_rps=$(awk -v n=$(( r[requests] - r[non200] )) -v s="$secs" 'BEGIN{printf "%.0f", n/s}')
  ms() { awk -v u="$1" 'BEGIN{printf "%.1f", u/1000}'; }
  P99[$window-$group]=$(ms "${r[p99_us]}"); MAXMS[$window-$group]=$(ms "${r[max_us]}")
  ERRS[$window-$group]=$(( r[non200] + sock ))
  local flag=""
  if (( r[non200] + sock > 0 )); then
    flag=" **ERRORS**"
    FLAGS+=("$window $group: ${r[non200]} non-200, $sock socket errors (connect ${r[errors_connect]}, read ${r[errors_read]}, write ${r[errors_write]}, timeout ${r[errors_timeout]}); first: $(head -c 300 "$f.err" | tr '\n' ' ')")
  fi
  LOAD_ROWS+=("| $window | $group | $(fmt "$secs" 1) | $(th "${r[requests]}") | $ok_rps | $(ms "${r[p50_us]}") | $(ms "${r[p90_us]}") | **${P99[$window-$group]}** | **${MAXMS[$window-$group]}** | ${r[non200]} / $sock$flag |")
  log "$window $group: $ok_rps ok/s, p50 $(ms "${r[p50_us]}") p99 ${P99[$window-$group]} max ${MAXMS[$window-$group]} ms, non-200 ${r[non200]}, socket errors $sock"
}

log "warm-up load ($WARMUP)"
start_load warmup "$(to_seconds "$WARMUP")"; wait_load
quiet_check "load before the move"
LOAD_BEFORE=$(loadavg)
log "window before: both groups for $LOAD_DURATION (wrk -t$THREADS -c$CONNS each)"
start_load before "$(to_seconds "$LOAD_DURATION")"; wait_load
load_row before moving; load_row before outside

log "window during: both groups, then move 2: shard move --layout $TO_LAYOUT under load"
curl -sS --max-time 10 "http://$ADDR/metrics" >"$WORK/metrics-b0" || true
start_load during "$MOVE_MAX"
LOAD_STARTED=$EPOCHREALTIME
sleep 1   # wrk's connections are up before the move starts
MOVE2_OK=1
run_move "move 2" "$DB_B" "$WORK/move-b" || MOVE2_OK=0
MOVE2_SECONDS=$MOVE_SECONDS
MOVE2_OFFSET=$(awk -v a="$LOAD_STARTED" -v b="$MOVE_STARTED" 'BEGIN{printf "%.1f", b-a}')
# wrk prints its summary (and payments.lua's BENCH line) on SIGINT; timeout passes it on.
for p in "${WRK_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
wait_load
load_row during moving; load_row during outside
check_leftovers "move 2" "$DB_B"

log "ledger audit through the API"
AUDIT=$(curl -sS --max-time 900 -H "Authorization: Bearer $ADMIN_TOKEN" "http://$ADDR/v1/admin/audit") || AUDIT='{}'
AUDIT_OK=$(jq -r '.ok // "?"' <<<"$AUDIT" 2>/dev/null || echo "?")
AUDIT_PAYMENTS=$(jq -r '.payments // "?"' <<<"$AUDIT" 2>/dev/null || echo "?")
[[ $AUDIT_OK == true ]] || FLAGS+=("audit after move 2 not ok: $(jq -c '[.checks[]? | select(.ok|not)]' <<<"$AUDIT" 2>/dev/null | head -c 500)")
ROWS_AFTER_B=()
for s in "${SHARDS[@]}"; do ROWS_AFTER_B+=("$s $(pg_sql "$s" "$DB_B" "SELECT count(*) FROM payments") payments"); done
curl -sS --max-time 10 "http://$ADDR/metrics" >"$WORK/metrics-b1" || true
retries() { awk -v r="reason=\"$2\"" '$1 ~ /^paytool_store_write_retries_total/ && index($1, r) {s += $2} END {printf "%.0f", s}' "$1"; }
RETRIES="fenced $(( $(retries "$WORK/metrics-b1" fenced) - $(retries "$WORK/metrics-b0" fenced) )), not_owned $(( $(retries "$WORK/metrics-b1" not_owned) - $(retries "$WORK/metrics-b0" not_owned) ))"
stop_server

FENCE_ROWS=()
if (( MOVE2_OK )); then
  while read -r first last src dst rows cs fences; do
    FENCE_ROWS+=("| $first-$last | $src → $dst | $(th "$rows") | $(fmt "$cs" 2) | $(awk -v n="$rows" -v s="$cs" 'BEGIN{ if (s>0) printf "%.0f", n/s; else print "-" }') | $fences |")
  done < <(jq -r '.ranges[] | "\(.first) \(.last) \(.source) \(.target) \(.rows) \(.copy_seconds) \(.fences_ms | join(", "))"' "$WORK/move-b.json")
  FENCE_MAX2=$(jq .fence_ms_max "$WORK/move-b.json")
else
  FENCE_MAX2="-"
fi
CLIENT_FENCE=${MAXMS[during-moving]:-}
CLIENT_FENCE_MS=$(awk -v m="${CLIENT_FENCE:-0}" 'BEGIN{printf "%.0f", m}')

# ---------------------------------------------------------------- 3. a change log's write cost
# The alternative to logical replication: the API writes a change-log row for every row it
# changes, in the same transaction, for a mover to replay. What that costs the write path,
# measured as pg_serve.sh measures the writer's batching: pgbench, ROWS_PER_TX rows per
# transaction in one UNNEST insert (the writer's shape), with and without the same number
# of change-log rows (bucket, table, key, op) inserted by a second UNNEST in the same
# transaction. On s0, after the moves, no API running.
CHANGELOG_ROWS=()
if [[ $SKIP_CHANGELOG != 1 ]]; then
  S=$WORK/scripts; mkdir -p "$S"
  pg_sql s0 postgres "CREATE DATABASE changelog" >/dev/null
  pg_sql s0 changelog "CREATE TABLE rows (bucket int2 NOT NULL, merchant_id text NOT NULL, id int8 NOT NULL, amount int8 NOT NULL, currency text NOT NULL, created_ms int8 NOT NULL, PRIMARY KEY (bucket, merchant_id, id));
    CREATE TABLE changes (seq bigserial PRIMARY KEY, bucket int2 NOT NULL, tbl text NOT NULL, key text NOT NULL, op char NOT NULL)" >/dev/null
  set_base='\set base random(0, 70000000000000000) * 128'
  b=(); m=(); k=(); a=(); c=(); t=(); kt=(); tb=(); op=()
  for ((i = 0; i < ROWS_PER_TX; i++)); do
    b+=("$((i % 1024))"); m+=("'mch_bench'"); k+=(":base::int8 + $i"); a+=(2500); c+=("'usd'"); t+=(0)
    kt+=("(:base::int8 + $i)::text"); tb+=("'payments'"); op+=("'i'")
  done
  insert_rows="INSERT INTO rows SELECT * FROM unnest(ARRAY[$(join_by , "${b[@]}")]::int2[], ARRAY[$(join_by , "${m[@]}")]::text[], ARRAY[$(join_by , "${k[@]}")]::int8[], ARRAY[$(join_by , "${a[@]}")]::int8[], ARRAY[$(join_by , "${c[@]}")]::text[], ARRAY[$(join_by , "${t[@]}")]::int8[]);"
  insert_changes="INSERT INTO changes (bucket, tbl, key, op) SELECT * FROM unnest(ARRAY[$(join_by , "${b[@]}")]::int2[], ARRAY[$(join_by , "${tb[@]}")]::text[], ARRAY[$(join_by , "${kt[@]}")]::text[], ARRAY[$(join_by , "${op[@]}")]::char[]);"
  { echo "$set_base"; echo "BEGIN;"; echo "$insert_rows"; echo "COMMIT;"; } >"$S/rows.sql"
  { echo "$set_base"; echo "BEGIN;"; echo "$insert_rows"; echo "$insert_changes"; echo "COMMIT;"; } >"$S/rows-and-changes.sql"
  [[ $EUID -eq 0 ]] && chown -R postgres: "$S"
  declare -A CL_RATE
  for script in rows rows-and-changes; do
    pg_sql s0 changelog "TRUNCATE rows, changes" >/dev/null; pg_sql s0 postgres "CHECKPOINT" >/dev/null
    quiet_check "change log: $script"; q=$Q
    log "pgbench -M prepared -f $script.sql ($ROWS_PER_TX rows/tx) -c $PG_CLIENTS -T $ROWS_DURATION over TCP"
    run_pgbench "cl-$script" s0 changelog "$ROWS_DURATION" -h 127.0.0.1 -M prepared -n -f "$S/$script.sql"
    CL_RATE[$script]=$(awk -v t="$PB_TPS" -v n="$ROWS_PER_TX" 'BEGIN{printf "%.0f", t*n}')
    CHANGELOG_ROWS+=("| $script | $(printf %.0f "$PB_TPS") | **$(th "${CL_RATE[$script]}")** | $PB_LAT | ${PB_FAILED:-0} | $q |")
  done
  CHANGELOG_RATIO=$(ratio "${CL_RATE[rows-and-changes]}" "${CL_RATE[rows]}")
fi

# ---------------------------------------------------------------- report
if [[ -n $PAYTOOL_BIN ]]; then CMD_PREFIX="PAYTOOL_BIN=$PAYTOOL_BIN "
elif [[ -n $BUILD_REF ]]; then CMD_PREFIX="BUILD_REF=$BUILD_REF "
else CMD_PREFIX="BUILD_REF= "; fi
[[ -z $PAYTOOL_BIN && $SKIP_BUILD == 1 ]] && CMD_PREFIX+="SKIP_BUILD=1 "
verdict() { if awk -v a="$1" -v b="$2" "BEGIN{exit !(a $3 b)}"; then echo "met"; else echo "**not met**"; fi; }
{
  echo "## paytool shard move (issue 9), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $NPROC cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); wrk, the API, the move and the three PostgreSQL servers on the same cores"
  echo "- paytool: $BUILT_FROM; PostgreSQL $PGV (3 fresh clusters, one per shard; initdb defaults + fsync=on, synchronous_commit=on, wal_level=logical, max_worker_processes=16, max_logical_replication_workers=8, max_sync_workers_per_subscription=4, wal_retrieve_retry_interval=200ms; 127.0.0.1); $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "- command: \`${CMD_PREFIX}SEED_PAYMENTS=$SEED_PAYMENTS SEED_MERCHANTS=$SEED_MERCHANTS SEED_CONNS=$SEED_CONNS MOVE_MAX=$MOVE_MAX LOAD_MERCHANTS=$LOAD_MERCHANTS CONNS=$CONNS THREADS=$THREADS LOAD_DURATION=$LOAD_DURATION WARMUP=$WARMUP WAIT_QUIET=$WAIT_QUIET bench/shard_move.sh\`"
  echo "- the move: \`paytool shard move --layout $TO_LAYOUT --output json\` from the state \`shard apply --layout $FROM_LAYOUT\` leaves; buckets that change owner: $MOVING_RANGES. Seeding: through the API (wrk + payments.lua, capture: true), $SEED_PAYMENTS payments requested over the merchants round-robin: ${SEEDED[a]:-?} payments in part 1 (${SEED_RATE[a]:-?}/s), ${SEEDED[b]:-?} in part 2 (${SEED_RATE[b]:-?}/s); then VACUUM ANALYZE and CHECKPOINT"
  echo
  echo "### Against the goals"
  echo
  echo "| goal | figure | verdict |"
  echo "| --- | --- | --- |"
  echo "| copy rows/s of the move ÷ COPY \\| COPY of the same rows, overall, >= $GOAL_COPY | ${M_ALL:-?} ÷ ${A_ALL:-?} rows/s = **$COPY_RATIO** | $(if [[ $COPY_RATIO == - ]]; then echo '**move failed**'; else verdict "$COPY_RATIO" "$GOAL_COPY" '>='; fi) |"
  echo "| longest write fence any merchant saw (max latency of the moving merchants during move 2) < $GOAL_FENCE_MS ms | **${CLIENT_FENCE:-?} ms** (the move's own longest fence: $FENCE_MAX2 ms; moving merchants' errors during the move: ${ERRS[during-moving]:-?}) | $(if [[ -z $CLIENT_FENCE ]]; then echo '-'; else verdict "$CLIENT_FENCE_MS" "$GOAL_FENCE_MS" '<'; fi) |"
  echo "| outside merchants: 0 errors during the move | ${ERRS[during-outside]:-?} errors; p99 ${P99[before-outside]:-?} ms before, ${P99[during-outside]:-?} ms during | $( [[ ${ERRS[during-outside]:-1} == 0 ]] && echo met || echo '**not met**') |"
  echo
  echo "### 1. Copy speed (move 1, no load)"
  echo
  echo "The anchor ran first, on the same rows between the same servers: per table \`psql -h 127.0.0.1 -c \"COPY (SELECT * FROM t WHERE bucket BETWEEN a AND b) TO STDOUT\" | psql -h 127.0.0.1 -c \"COPY t FROM STDIN\"\` into a scratch database on the target server (schema from \`pg_dump --schema-only\` of the source shard, indexes included), the six tables one after the other; then the scratch database was dropped and the move ran. The move's rows/s is its report's rows ÷ copy_seconds (copy_seconds runs from creating the publication, slot and subscription until every table's initial sync is done, polled every 100 ms; PostgreSQL's table sync copies up to 4 tables at once)."
  echo
  echo "| buckets | from → to | rows (move) | copy s | move rows/s | rows (anchor) | anchor s | anchor rows/s | move ÷ anchor | fences ms | cleaned rows | audited payments |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  if (( ${#COPY_ROWS[@]} )); then printf '%s\n' "${COPY_ROWS[@]}"; else echo "| (move 1 failed) | | | | | | | | | | | |"; fi
  echo
  echo "Move 1 took ${MOVE1_SECONDS}s in all (copy, catch-up, two fences, checksums and the ledger audit before and after the switch, clean-up); the dry run's expected fence: $(fmt "$EXPECTED_FENCE" 0) ms. After it: $(join_by ', ' "${ROWS_AFTER_A[@]}")."
  echo
  echo "Anchor per table:"
  echo
  echo "| buckets | from → to | rows and seconds per table |"
  echo "| --- | --- | --- |"
  printf '%s\n' "${ANCHOR_ROWS_TABLE[@]}"
  echo
  echo "### 2. Fences under load (move 2)"
  echo
  echo "One \`paytool serve --layout $FROM_LAYOUT\` (its env names s2 too), two wrk processes at once (\`wrk -t$THREADS -c$CONNS --timeout 10s -s bench/payments.lua\` each): $LOAD_MERCHANTS merchants in the moving buckets, $LOAD_MERCHANTS outside them. Window **before**: $LOAD_DURATION after a $WARMUP warm-up (load avg $LOAD_BEFORE). Window **during**: wrk started ${MOVE2_OFFSET:-?} s before the move and stopped (SIGINT) when it returned; the move took ${MOVE2_SECONDS:-?} s. Latencies in ms; \"max\" of the moving merchants during the move is the longest write fence a merchant saw."
  echo
  echo "| window | merchants | seconds | requests | 200s/s | p50 | p90 | p99 | max | non-200 / socket errors |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${LOAD_ROWS[@]}"
  echo
  echo "The move's own report (under load):"
  echo
  echo "| buckets | from → to | rows | copy s | copy rows/s | fences ms (verify, switch; more if retried) |"
  echo "| --- | --- | --- | --- | --- | --- |"
  if (( ${#FENCE_ROWS[@]} )); then printf '%s\n' "${FENCE_ROWS[@]}"; else echo "| (move 2 failed) | | | | | |"; fi
  echo
  echo "fence_ms_max $FENCE_MAX2. After it: $(join_by ', ' "${ROWS_AFTER_B[@]}"); ledger audit through the API: ok = $AUDIT_OK, $AUDIT_PAYMENTS payments; the API's write retries during the window (paytool_store_write_retries_total): $RETRIES."
  echo
  echo "Move 2's progress lines (seconds since it started):"
  echo
  echo '```'
  head -60 "$WORK/move-b.log" 2>/dev/null || true
  echo '```'
  if (( ${#FLAGS[@]} )); then echo; echo "### Flagged"; echo; printf -- '- %s\n' "${FLAGS[@]}"; fi
  echo
  if (( ${#CHANGELOG_ROWS[@]} )); then
    echo
    echo "### 3. What a change log would cost the write path (the alternative to logical replication)"
    echo
    echo "pgbench -M prepared, $PG_CLIENTS clients, -j 2, ${ROWS_DURATION}s each, TCP, on s0 with no API running: $ROWS_PER_TX rows per transaction in one UNNEST insert (the writer's shape), alone and with $ROWS_PER_TX change-log rows (bucket, table, key, op) inserted by a second UNNEST in the same transaction."
    echo
    echo "| script | transactions/s | data rows/s | latency avg ms | failed | busy cores before |"
    echo "| --- | --- | --- | --- | --- | --- |"
    printf '%s\n' "${CHANGELOG_ROWS[@]}"
    echo
    echo "With a change log the same transactions carry **$CHANGELOG_RATIO×** the data rows/s: the write path's cost, always (a move may start any time). Logical replication adds no statement to it."
  fi
  quiet_summary
} | tee "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
