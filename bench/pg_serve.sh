#!/usr/bin/env bash
# Benchmark `paytool serve --layout` on PostgreSQL shards (issue 8), in one invocation on
# one machine, against anchors measured on the same PostgreSQL servers:
#   1. payments/s on ONE shard ÷ pgbench TPC-B tps on the same server (TCP 127.0.0.1, as
#      the API connects; the Unix-socket figure too, for reference).        goal >= 3.0
#   2. payments/s on 4 shards (4 PostgreSQL servers) ÷ on 1 shard.          goal >= 0.9
#   3. the writer's UNNEST batching against one INSERT per row: pgbench custom scripts
#      of ROWS_PER_TX rows per transaction (one UNNEST insert; single-row inserts
#      pipelined; single-row inserts one round trip each), rows/s.
# Every PostgreSQL server is a fresh temporary cluster with the same settings
# (initdb defaults, fsync on, synchronous_commit on, listening on 127.0.0.1 only).
# For each API run: payments/s (200s), p50/p99, errors, the audit (ok, payments = 200s),
# mean group-commit batch and commit time (/metrics), CPU per payment of the API server
# and of PostgreSQL, and the machine's other load.
#
# Usage: bench/pg_serve.sh        (as root, or a user who can run PostgreSQL)
#
# Knobs (env vars), defaults in brackets:
#   DURATION [20s]       wrk duration of each payments run
#   WARMUP [3s]          unmeasured wrk run before each (the writers connect, caches warm)
#   CONNS ["64 128"]     wrk -c values for the payments runs (each on 1 and on 4 shards)
#   THREADS [2]          wrk -t;  MERCHANTS [8]  merchants, balanced over the shards
#   PG_DURATION [20]     pgbench -T of the TPC-B anchors;  PG_SCALE [10]  pgbench -i -s
#   PG_CLIENTS [8]       pgbench -c (TPC-B and the row scripts; -j 2)
#   ROWS_DURATION [15]   pgbench -T of each row script;  ROWS_PER_TX [100]
#   SHARDS_MANY [4]      shards (and PostgreSQL servers) of the many-shard case
#   BUILD_REF [HEAD]     git ref built from a clean `git archive` into target/bench-ref;
#                        BUILD_REF= (empty) builds the working tree instead
#   SKIP_BUILD [0]       1 uses the binary already built
#   SKIP_ROWS [0]        1 skips part 3 (the row scripts)
#   ANALYZE [1]          ANALYZE the shard databases after each warm-up (the steady state
#                        of a live shard); 0 measures never-analyzed fresh shards as they are
#   BENCH_TMP [/tmp]     where the clusters and data dirs go (same disk matters)
#   KEEP [0]             1 keeps the clusters' files and logs after the run
#   WAIT_QUIET [600]     before each measured run, wait up to this many seconds for the
#                        machine to be idle (other processes < 0.3 cores); then measure
#                        anyway and say so in the results; 0 disables
# Quick try: DURATION=3s PG_DURATION=3 ROWS_DURATION=3 PG_SCALE=1 CONNS=64 WAIT_QUIET=0 bench/pg_serve.sh
#
# Output: a markdown results block on stdout, also written to bench/results/pg-serve-<date>.md.
# Everything listens on 127.0.0.1 only; every run is bounded by `timeout`; a trap stops
# every API server and PostgreSQL cluster this script started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-"64 128"}
THREADS=${THREADS:-2}
MERCHANTS=${MERCHANTS:-8}
PG_DURATION=${PG_DURATION:-20}
PG_SCALE=${PG_SCALE:-10}
PG_CLIENTS=${PG_CLIENTS:-8}
ROWS_DURATION=${ROWS_DURATION:-15}
ROWS_PER_TX=${ROWS_PER_TX:-100}
SHARDS_MANY=${SHARDS_MANY:-4}
BUILD_REF=${BUILD_REF-HEAD}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_ROWS=${SKIP_ROWS:-0}
ANALYZE=${ANALYZE:-1}
BENCH_TMP=${BENCH_TMP:-/tmp}
KEEP=${KEEP:-0}
WAIT_QUIET=${WAIT_QUIET:-600}
GOAL_ONE=3.0
GOAL_MANY=0.9

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d "$BENCH_TMP/paytool-pgbench.XXXXXX")
chmod 755 "$WORK"      # the postgres user reads scripts and writes clusters under it
SERVER_PID=""
AS_PG=()
PG_DATAS=()            # every cluster started, stopped by the trap
cleanup() {
  local rc=$?
  set +e
  end_process "$SERVER_PID"
  stop_clusters
  drop_work
  exit $rc
}
trap_cleanup

# ---------------------------------------------------------------- tools, build
load_tools
find_postgres
build_paytool
PGV=$("$PGBIN/postgres" --version | awk '{print $3}')

# ---------------------------------------------------------------- PostgreSQL clusters
PG_OPTS="-c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on"
pg_pids() {   # the postmaster and its children (backends, walwriter, checkpointer, ...)
  local pm
  pm=$(head -1 "${PG_DIR[$1]}/postmaster.pid")
  echo "$pm" $(ps -o pid= --ppid "$pm")
}

MANY_NAMES=()
for ((i = 0; i < SHARDS_MANY; i++)); do MANY_NAMES+=("pg$i"); pg_start "pg$i"; done
ONE=pg0   # the one-shard case, the anchors and the row scripts run on pg0

STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$ROOT/bench/results"
RESULTS=$ROOT/bench/results/pg-serve-$STAMP.md
ANCHORS=(); ROWS=(); SCRIPTS=(); FLAGS=(); QUIET_NOTES=()
Q=""

# ---------------------------------------------------------------- 1. TPC-B anchors
pg_sql "$ONE" postgres "CREATE DATABASE pgbench" >/dev/null
log "pgbench -i -s $PG_SCALE on $ONE"
timeout 900 "${AS_PG[@]}" "$PGBENCH" -h "${PG_SOCK[$ONE]}" -p "${PG_PORT[$ONE]}" -U postgres \
  -i -s "$PG_SCALE" -q pgbench >"$WORK/pgbench-init.log" 2>&1 ||
  { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }
for via in tcp socket; do
  host=127.0.0.1; [[ $via == socket ]] && host=${PG_SOCK[$ONE]}
  pg_sql "$ONE" pgbench "VACUUM ANALYZE" >/dev/null; pg_sql "$ONE" postgres "CHECKPOINT" >/dev/null
  quiet_check "pgbench TPC-B $via"; q=$Q
  log "pgbench TPC-B over $via: -c $PG_CLIENTS -j 2 -T $PG_DURATION (load $(loadavg), busy $q cores)"
  run_pgbench "tpcb-$via" "$ONE" pgbench "$PG_DURATION" -h "$host"
  log "pgbench TPC-B $via: $PB_TPS tps, $PB_LAT ms avg"
  [[ $via == tcp ]] && TPCB_TCP=$PB_TPS || TPCB_SOCK=$PB_TPS
  ANCHORS+=("| PostgreSQL $PGV pgbench TPC-B -s $PG_SCALE, $PG_CLIENTS clients, -j 2, **$via**, ${PG_DURATION}s | $(printf %.0f "$PB_TPS") tps | avg $PB_LAT ms | ${PB_FAILED:-0} | $q |")
done

# ---------------------------------------------------------------- 2. paytool serve on layouts
ADMIN_TOKEN=adm_bench_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
ADDR=""
start_server() {   # LABEL LAYOUT
  local label=$1 layout=$2
  log "paytool shard apply --layout ${layout#"$WORK"/}"
  timeout 120 "$BIN" shard apply --layout "$layout" >"$WORK/apply-$label.log" 2>&1 ||
    { cat "$WORK/apply-$label.log" >&2; die "shard apply failed"; }
  PAYTOOL_ADMIN_TOKEN=$ADMIN_TOKEN "$BIN" serve --layout "$layout" --listen 127.0.0.1:0 \
    --data-dir "$WORK/data-$label" >"$WORK/serve-$label.out" 2>"$WORK/serve-$label.err" &
  SERVER_PID=$!
  await_listening "$SERVER_PID" "$WORK/serve-$label.out" "$WORK/serve-$label.err"
}
# Sum over clusters of one integer a query on DB returns.
db_stat() {   # SQL DB NAME...
  local sql=$1 db=$2 s=0 n v; shift 2
  for n in "$@"; do v=$(pg_sql "$n" "$db" "$sql"); s=$((s + ${v:-0})); done
  echo "$s"
}
TUP_INSERTED="SELECT tup_inserted FROM pg_stat_database WHERE datname = current_database()"
SEQ_READ="SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables"

declare -A OK_RPS
run_layout() {   # LABEL DB CLUSTER...
  local label=$1 db=$2; shift 2
  local -a clusters=("$@")
  local shards=${#clusters[@]} layout=$WORK/layout-$label.toml i n lo hi
  {
    echo "# written by bench/pg_serve.sh: $shards shard(s), each on its own PostgreSQL server"
    echo "name = \"bench-$label\""; echo "version = 1"; echo "buckets = 1024"
    for ((i = 0; i < shards; i++)); do
      echo; echo "[shards.s$i]"; echo "url = \"postgres://postgres@127.0.0.1:${PG_PORT[${clusters[i]}]}/$db\""
    done
    for ((i = 0; i < shards; i++)); do
      lo=$(( i * 1024 / shards )); hi=$(( (i + 1) * 1024 / shards - 1 ))
      echo; echo "[[ranges]]"; echo "buckets = \"$lo-$hi\""; echo "shard = \"s$i\""
    done
  } >"$layout"
  for n in "${clusters[@]}"; do pg_sql "$n" postgres "CREATE DATABASE $db" >/dev/null; done
  start_server "$label" "$layout"
  local keys; keys=$(make_merchants "$shards" "$ADMIN_TOKEN")
  local conns run=0
  for conns in $CONNS; do
    run=$((run + 1))
    local tag="r$STAMP-$label-$run" ds ws; ds=$(to_seconds "$DURATION"); ws=$(to_seconds "$WARMUP")
    local out=$WORK/wrk-$label-$conns
    local a0 pay0
    # Warm-up: the writers connect on their first batch; their backends must exist (and be
    # counted) before the measured run starts.
    BENCH_KEYS=$keys BENCH_RUN=$tag-warm timeout $((ws + 60)) wrk -t"$THREADS" -c"$conns" -d"$WARMUP" \
      -s "$ROOT/bench/payments.lua" "http://$ADDR" >"$out.warm" 2>&1 || log "warm-up wrk exited with status $?"
    curl -sS --max-time 10 "http://$ADDR/metrics" >"$out.m0"
    a0=$(curl -sS --max-time 300 -H "Authorization: Bearer $ADMIN_TOKEN" "http://$ADDR/v1/admin/audit")
    pay0=$(jq .payments <<<"$a0")
    # A fresh shard's tables have never been analyzed: the writer's cached plans then read
    # the idempotency table sequentially every batch until autovacuum's first ANALYZE
    # (BENCHMARKS.md). ANALYZE=1 measures the steady state a live shard is in.
    if [[ $ANALYZE == 1 ]]; then for n in "${clusters[@]}"; do pg_sql "$n" "$db" "ANALYZE" >/dev/null; done; fi
    for n in "${clusters[@]}"; do pg_sql "$n" postgres "CHECKPOINT" >/dev/null; done
    quiet_check "payments $label c=$conns"; local q=$Q
    local load_before; load_before=$(loadavg)
    local ti0 sr0; ti0=$(db_stat "$TUP_INSERTED" "$db" "${clusters[@]}"); sr0=$(db_stat "$SEQ_READ" "$db" "${clusters[@]}")
    local -a pgp=(); for n in "${clusters[@]}"; do pgp+=($(pg_pids "$n")); done
    local busy0 total0 busy1 total1 srv0 srv1 pg0 pg1
    read -r busy0 total0 < <(cpu_jiffies); srv0=$(proc_jiffies "$SERVER_PID"); pg0=$(procs_jiffies "${pgp[@]}")
    # pidstat beside the run: per-process CPU of the server and the PostgreSQL processes.
    local pids_csv; pids_csv=$(IFS=,; echo "$SERVER_PID,${pgp[*]}")
    timeout $((ds + 5)) pidstat -u -p "$pids_csv" "$ds" 1 >"$out.pidstat" 2>&1 &
    local pidstat_pid=$!
    log "wrk -t$THREADS -c$conns -d$DURATION POST /v1/payments ($label: $shards shard(s), load $load_before, busy $q cores)"
    TIMEFORMAT='%U %S'
    { time BENCH_KEYS=$keys BENCH_RUN=$tag timeout $((ds + 60)) \
        wrk -t"$THREADS" -c"$conns" -d"$DURATION" --timeout 10s --latency \
        -s "$ROOT/bench/payments.lua" "http://$ADDR" >"$out.txt" 2>"$out.err" ||
        log "wrk exited with status $?"; } 2>"$out.time"
    # A backend born during the run counts from 0; one that ended is lost (none should).
    local -a pgp1=(); for n in "${clusters[@]}"; do pgp1+=($(pg_pids "$n")); done
    read -r busy1 total1 < <(cpu_jiffies); srv1=$(proc_jiffies "$SERVER_PID")
    pg1=$(procs_jiffies $(printf '%s\n' "${pgp[@]}" "${pgp1[@]}" | sort -un))
    sleep 1.2   # backends flush their statistics at most once a second
    local ti1 sr1; ti1=$(db_stat "$TUP_INSERTED" "$db" "${clusters[@]}"); sr1=$(db_stat "$SEQ_READ" "$db" "${clusters[@]}")
    wait "$pidstat_pid" 2>/dev/null || true
    local wrk_user wrk_sys; read -r wrk_user wrk_sys < <(tail -1 "$out.time")
    curl -sS --max-time 10 "http://$ADDR/metrics" >"$out.m1"
    local audit; audit=$(curl -sS --max-time 600 -H "Authorization: Bearer $ADMIN_TOKEN" "http://$ADDR/v1/admin/audit")
    local audit_ok pay1 payments
    audit_ok=$(jq .ok <<<"$audit"); pay1=$(jq .payments <<<"$audit"); payments=$((pay1 - pay0))

    local line; line=$(grep '^BENCH ' "$out.txt") || { cat "$out.txt" "$out.err" >&2; die "wrk printed no BENCH line"; }
    declare -A r=(); local kv
    for kv in ${line#BENCH }; do r[${kv%%=*}]=${kv#*=}; done
    local errors=$(( r[errors_connect] + r[errors_read] + r[errors_write] + r[errors_timeout] ))
    local ok=$(( r[requests] - r[non200] ))
    local secs; secs=$(awk -v d="${r[duration_us]}" 'BEGIN{print d/1e6}')
    local ok_rps; ok_rps=$(awk -v n="$ok" -v s="$secs" 'BEGIN{printf "%.0f", n/s}')
    OK_RPS[$label-$conns]=$ok_rps
    local p50 p99
    p50=$(awk -v u="${r[p50_us]}" 'BEGIN{printf "%.2f", u/1000}'); p99=$(awk -v u="${r[p99_us]}" 'BEGIN{printf "%.2f", u/1000}')
    d() { awk -v a="$(metric_sum "$out.m1" "$1")" -v b="$(metric_sum "$out.m0" "$1")" 'BEGIN{print a-b}'; }
    local bsum bcnt csum; bsum=$(d paytool_group_commit_batch_size_sum); bcnt=$(d paytool_group_commit_batch_size_count); csum=$(d paytool_group_commit_seconds_sum)
    local mean_batch mean_commit batches_s
    mean_batch=$(awk -v s="$bsum" -v c="$bcnt" 'BEGIN{ if (c>0) printf "%.1f", s/c; else print "-" }')
    mean_commit=$(awk -v s="$csum" -v c="$bcnt" 'BEGIN{ if (c>0) printf "%.2f", s/c*1000; else print "-" }')
    batches_s=$(awk -v c="$bcnt" -v s="$secs" 'BEGIN{printf "%.0f", c/s}')
    # Share of the run each shard's writer spent inside a batch (BEGIN..COMMIT), mean over shards.
    local busy_writer; busy_writer=$(awk -v c="$csum" -v s="$secs" -v n="$shards" 'BEGIN{printf "%.0f%%", c/s/n*100}')
    local seq_per_pay; seq_per_pay=$(awk -v t=$((sr1 - sr0)) -v n="$payments" 'BEGIN{ if (n>0) printf "%.1f", t/n; else print "-" }')
    local rows_per_pay; rows_per_pay=$(awk -v t=$((ti1 - ti0)) -v n="$payments" 'BEGIN{ if (n>0) printf "%.1f", t/n; else print "-" }')
    local srv_cores pg_cores wrk_cores all_cores other_cores srv_us pg_us
    srv_cores=$(awk -v j=$((srv1 - srv0)) -v hz="$HZ" -v s="$secs" 'BEGIN{printf "%.2f", j/hz/s}')
    pg_cores=$(awk -v j=$((pg1 - pg0)) -v hz="$HZ" -v s="$secs" 'BEGIN{printf "%.2f", j/hz/s}')
    wrk_cores=$(awk -v u="$wrk_user" -v y="$wrk_sys" -v s="$secs" 'BEGIN{printf "%.2f", (u+y)/s}')
    all_cores=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$NPROC" 'BEGIN{printf "%.2f", b/t*n}')
    other_cores=$(awk -v a="$all_cores" -v s="$srv_cores" -v p="$pg_cores" -v w="$wrk_cores" 'BEGIN{o=a-s-p-w; if (o<0) o=0; printf "%.2f", o}')
    srv_us=$(awk -v j=$((srv1 - srv0)) -v hz="$HZ" -v n="$payments" 'BEGIN{ if (n>0) printf "%.0f", j/hz/n*1e6; else print "-" }')
    pg_us=$(awk -v j=$((pg1 - pg0)) -v hz="$HZ" -v n="$payments" 'BEGIN{ if (n>0) printf "%.0f", j/hz/n*1e6; else print "-" }')
    local flag=""
    if (( r[non200] > 0 || errors > 0 )); then
      flag=" **ERRORS**"
      FLAGS+=("$label c=$conns: ${r[non200]} non-200, $errors socket errors (connect ${r[errors_connect]}, read ${r[errors_read]}, write ${r[errors_write]}, timeout ${r[errors_timeout]}); first: $(head -c 300 "$out.err" | tr '\n' ' ')")
    fi
    if [[ $audit_ok != true ]]; then
      flag="$flag **AUDIT FAILED**"
      FLAGS+=("$label c=$conns: audit not ok: $(jq -c '[.checks[]? | select(.ok|not)]' <<<"$audit" | head -c 500)")
    fi
    (( payments == ok )) || FLAGS+=("$label c=$conns: the audit counts $payments new payments, $ok were answered 200 (a request cut off at wrk's end may have committed)")
    log "$label c=$conns: $ok_rps ok/s, p50 $p50 p99 $p99 ms, non-200 ${r[non200]}, errors $errors, payments $payments, audit $audit_ok, batch $mean_batch, commit $mean_commit ms, CPU server $srv_cores pg $pg_cores wrk $wrk_cores other $other_cores"
    ROWS+=("| $shards | $conns | **$ok_rps** | $p50 | $p99 | ${r[non200]} / $errors$flag | $payments | $audit_ok | $mean_batch | $mean_commit | $batches_s | $busy_writer | $rows_per_pay | $seq_per_pay | $srv_us / $pg_us | $srv_cores / $pg_cores / $wrk_cores / $other_cores | $q | $load_before |")
    cp "$out.pidstat" "$WORK/pidstat-$label-$conns.txt"
    PIDSTAT_SUMMARY+=("$label c=$conns: $(awk -v srv="$SERVER_PID" '/^Average:/ && $3 ~ /^[0-9]+$/ { if ($3==srv) s+=$8; else p+=$8 } END {printf "paytool %.0f%% of a core, PostgreSQL processes %.0f%%", s, p}' "$out.pidstat")")
    unset r
  done
  stop_server
}
PIDSTAT_SUMMARY=()
run_layout one paytool1 "$ONE"
run_layout many paytool"$SHARDS_MANY" "${MANY_NAMES[@]}"

# ---------------------------------------------------------------- 3. UNNEST vs one INSERT per row
if [[ $SKIP_ROWS != 1 ]]; then
  S=$WORK/scripts; mkdir -p "$S"
  pg_sql "$ONE" postgres "CREATE DATABASE rowsbench" >/dev/null
  pg_sql "$ONE" rowsbench "CREATE TABLE rows (bucket int2 NOT NULL, merchant_id text NOT NULL, id int8 NOT NULL, amount int8 NOT NULL, currency text NOT NULL, created_ms int8 NOT NULL, PRIMARY KEY (bucket, merchant_id, id))" >/dev/null
  # Keys: one random base per transaction (a 2^57 space), row i gets base + i: unique, and
  # the client does the same (small) work in every script.
  set_base='\set base random(0, 70000000000000000) * 128'
  cols="INSERT INTO rows (bucket, merchant_id, id, amount, currency, created_ms)"
  {
    echo "$set_base"; echo "BEGIN;"
    b=(); m=(); k=(); a=(); c=(); t=()
    for ((i = 0; i < ROWS_PER_TX; i++)); do
      b+=("$((i % 1024))"); m+=("'mch_bench'"); k+=(":base::int8 + $i"); a+=(2500); c+=("'usd'"); t+=(0)
    done
    j() { local IFS=,; echo "$*"; }
    echo "$cols SELECT * FROM unnest(ARRAY[$(j "${b[@]}")]::int2[], ARRAY[$(j "${m[@]}")]::text[], ARRAY[$(j "${k[@]}")]::int8[], ARRAY[$(j "${a[@]}")]::int8[], ARRAY[$(j "${c[@]}")]::text[], ARRAY[$(j "${t[@]}")]::int8[]);"
    echo "COMMIT;"
  } >"$S/unnest.sql"
  singles() {
    for ((i = 0; i < ROWS_PER_TX; i++)); do
      echo "$cols VALUES ($((i % 1024)), 'mch_bench', :base::int8 + $i, 2500, 'usd', 0);"
    done
  }
  { echo "$set_base"; echo '\startpipeline'; echo "BEGIN;"; singles; echo "COMMIT;"; echo '\endpipeline'; } >"$S/single-pipelined.sql"
  { echo "$set_base"; echo "BEGIN;"; singles; echo "COMMIT;"; } >"$S/single.sql"
  [[ $EUID -eq 0 ]] && chown -R postgres: "$S"
  for script in unnest single-pipelined single; do
    pg_sql "$ONE" rowsbench "TRUNCATE rows" >/dev/null; pg_sql "$ONE" postgres "CHECKPOINT" >/dev/null
    quiet_check "rows $script"; q=$Q
    log "pgbench -M prepared -f $script.sql ($ROWS_PER_TX rows/tx) -c $PG_CLIENTS -T $ROWS_DURATION over TCP"
    run_pgbench "rows-$script" "$ONE" rowsbench "$ROWS_DURATION" -h 127.0.0.1 -M prepared -n -f "$S/$script.sql"
    rows_s=$(awk -v t="$PB_TPS" -v n="$ROWS_PER_TX" 'BEGIN{printf "%.0f", t*n}')
    count=$(pg_sql "$ONE" rowsbench "SELECT count(*) FROM rows")
    log "rows $script: $PB_TPS tx/s = $rows_s rows/s ($count rows in the table)"
    SCRIPTS+=("| $script | $(printf %.0f "$PB_TPS") | **$rows_s** | $PB_LAT | ${PB_FAILED:-0} | $count | $q |")
    eval "ROWS_$(tr - _ <<<"$script")=$rows_s"
  done
fi

# ---------------------------------------------------------------- report
{
  echo "## paytool serve on PostgreSQL shards (issue 8), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $NPROC cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); load generator, API and every PostgreSQL server on the same cores"
  echo "- paytool: $BUILT_FROM, release build; PostgreSQL $PGV ($SHARDS_MANY fresh clusters, initdb defaults + fsync=on, synchronous_commit=on, 127.0.0.1); $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "- command: \`${BUILD_REF:+BUILD_REF=$BUILD_REF }DURATION=$DURATION CONNS=\"$CONNS\" PG_DURATION=$PG_DURATION PG_SCALE=$PG_SCALE ROWS_DURATION=$ROWS_DURATION ANALYZE=$ANALYZE ROWS_PER_TX=$ROWS_PER_TX SHARDS_MANY=$SHARDS_MANY bench/pg_serve.sh\`"
  echo "- payments: wrk -t$THREADS -c<conns> -d$DURATION --latency -s bench/payments.lua, POST /v1/payments (capture: true), unique Idempotency-Key each, $MERCHANTS merchants balanced over the shards; one \`paytool serve --layout\` per layout"
  echo
  echo "### Ratios against the goals"
  echo
  echo "| conns | 1 shard payments/s | ÷ TPC-B tps over TCP (goal >= $GOAL_ONE) | ÷ TPC-B over the Unix socket | $SHARDS_MANY shards payments/s | $SHARDS_MANY shards ÷ 1 shard (goal >= $GOAL_MANY) |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for conns in $CONNS; do
    o=${OK_RPS[one-$conns]}; m=${OK_RPS[many-$conns]}
    echo "| $conns | $o | **$(ratio "$o" "$TPCB_TCP")** | $(ratio "$o" "$TPCB_SOCK") | $m | **$(ratio "$m" "$o")** |"
  done
  echo
  echo "### Anchors: pgbench TPC-B on the one-shard server (pg0)"
  echo
  echo "| anchor | throughput | latency | failed | busy cores before |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${ANCHORS[@]}"
  echo
  echo "### POST /v1/payments"
  echo
  echo "| shards | conns | payments/s (200s) | p50 ms | p99 ms | non-200 / socket errors | payments in audit | audit ok | mean batch | mean batch ms (BEGIN..COMMIT) | batches/s | writer busy (mean per shard) | rows inserted per payment | rows read by seq scans per payment | CPU µs/payment API / PostgreSQL | CPU cores API / PostgreSQL / wrk / other | busy cores before | load avg before |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "pidstat over each run (per-process %CPU, summed): $(IFS=';'; echo "${PIDSTAT_SUMMARY[*]}")."
  if [[ $SKIP_ROWS != 1 ]]; then
    echo
    echo "### Batching: $ROWS_PER_TX rows per transaction, pgbench -M prepared, $PG_CLIENTS clients, TCP, on pg0"
    echo
    echo "| script | transactions/s | rows/s | latency avg ms | failed | rows in table after | busy cores before |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    printf '%s\n' "${SCRIPTS[@]}"
    echo
    echo "unnest: one \`INSERT ... SELECT * FROM unnest(ARRAY[...], ...)\` of $ROWS_PER_TX rows (6 columns) between BEGIN and COMMIT; single-pipelined: BEGIN, $ROWS_PER_TX single-row INSERTs, COMMIT in one pgbench pipeline (\\startpipeline); single: the same, one round trip each. UNNEST ÷ pipelined single rows: $(ratio "${ROWS_unnest:-0}" "${ROWS_single_pipelined:-0}"); UNNEST ÷ single: $(ratio "${ROWS_unnest:-0}" "${ROWS_single:-0}")."
  fi
  if (( ${#FLAGS[@]} )); then echo; echo "### Flagged"; echo; printf -- '- %s\n' "${FLAGS[@]}"; fi
  echo
  quiet_summary
  echo "\"other\" CPU is machine-wide busy time minus the API server, PostgreSQL (every process of the shards' clusters) and wrk during the run. Mean batch and batch time come from /metrics (paytool_group_commit_batch_size, paytool_group_commit_seconds); rows inserted per payment from pg_stat_database.tup_inserted of the shard databases (statistics are flushed about once a second: approximate); rows read by seq scans from pg_stat_user_tables.seq_tup_read (0 when every lookup uses an index). ANALYZE=$ANALYZE: $( [[ $ANALYZE == 1 ]] && echo "the shard databases were ANALYZEd after each warm-up" || echo "no ANALYZE, fresh shards as autovacuum leaves them")."
} | tee "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
