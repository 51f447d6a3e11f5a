#!/usr/bin/env bash
# Benchmark `paytool serve` (POST /v1/payments, created + captured, durable) beside two
# anchors measured in the same invocation on the same machine:
#   - PostgreSQL 15 pgbench TPC-B (fsync on, synchronous_commit on, Unix socket)
#   - wrk against GET /healthz on the same paytool server (the HTTP stack's ceiling)
#
# Usage: bench/serve.sh            (from anywhere; as root, or a user who can run PostgreSQL)
#
# Knobs (env vars), defaults in brackets:
#   DURATION [20s]        wrk duration of each payments run
#   HEALTH_DURATION [10s] wrk duration of the /healthz anchor
#   PG_DURATION [20]      pgbench -T seconds;  PG_SCALE [10]  pgbench -i -s;  PG_CLIENTS [8]
#   SHARDS ["1 2"]        paytool --shards values, one fresh data dir each
#   CONNS ["32 64 128"]   wrk -c values for the payments runs
#   THREADS [2]           wrk -t for the payments runs
#   MERCHANTS [8]         merchants that receive traffic (balanced over the shards)
#   SKIP_PG [0]           1 skips the PostgreSQL anchor;  SKIP_BUILD [0]  1 skips cargo build
#   BUILD_REF []          build this git ref (e.g. HEAD) from `git archive` into
#                         target/bench-ref instead of the working tree (which may hold
#                         someone's uncommitted edits)
#   BENCH_TMP [/tmp]      where data dirs and the PostgreSQL cluster go (same disk matters)
#   KEEP [0]              1 keeps the data dirs and logs after the run
#   WAIT_QUIET [60]       before each measured run, wait up to this many seconds for the
#                         machine to be idle (other processes < 0.3 cores); 0 disables
# Quick run: DURATION=5s HEALTH_DURATION=3s PG_DURATION=5 CONNS=64 bench/serve.sh
#
# Output: a markdown results block on stdout, also written to bench/results/serve-<date>.md.
# Everything listens on 127.0.0.1 only; every run is bounded by `timeout`; a trap stops
# every server this script started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-20s}
HEALTH_DURATION=${HEALTH_DURATION:-10s}
PG_DURATION=${PG_DURATION:-20}
PG_SCALE=${PG_SCALE:-10}
PG_CLIENTS=${PG_CLIENTS:-8}
SHARDS=${SHARDS:-"1 2"}
CONNS=${CONNS:-"32 64 128"}
THREADS=${THREADS:-2}
MERCHANTS=${MERCHANTS:-8}
SKIP_PG=${SKIP_PG:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
BUILD_REF=${BUILD_REF:-}
BENCH_TMP=${BENCH_TMP:-/tmp}
KEEP=${KEEP:-0}
WAIT_QUIET=${WAIT_QUIET:-60}
GOAL_RPS=11574      # one billion payments a day
GOAL_P99_MS=50

# log, die, to_seconds, apt_install, find_postgres, build_paytool, free_port, wait_quiet,
# metric_sum, shard_of, ...
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d "$BENCH_TMP/paytool-bench.XXXXXX")
SERVER_PID=""
PG_DATA=""
PG_CTL=""
AS_PG=()
cleanup() {
  local rc=$?
  set +e
  end_process "$SERVER_PID"
  if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
    "${AS_PG[@]}" "$PG_CTL" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1
  fi
  drop_work
  exit $rc
}
trap_cleanup

# ---------------------------------------------------------------- tools
load_tools
if [[ $SKIP_PG != 1 ]]; then
  find_postgres
fi

# ---------------------------------------------------------------- build
build_paytool

# ---------------------------------------------------------------- helpers
# fsync/fdatasync calls by a process, counted with perf tracepoints when perf works here.
PERF_OK=0
if command -v perf >/dev/null &&
   perf stat -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -- true >/dev/null 2>&1; then
  PERF_OK=1
fi
ADMIN=""
ADDR=""
start_server() {
  local shards=$1 dir=$WORK/data-shards$1
  rm -rf "$dir"
  log "starting paytool serve --shards $shards"
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir" --shards "$shards" \
    >"$WORK/serve-$shards.out" 2>"$WORK/serve-$shards.err" &
  SERVER_PID=$!
  await_listening "$SERVER_PID" "$WORK/serve-$shards.out" "$WORK/serve-$shards.err"
  ADMIN=$(cat "$dir/admin_token")
}



# ---------------------------------------------------------------- results
STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$ROOT/bench/results"
RESULTS=$ROOT/bench/results/serve-$STAMP.md
ROWS=()      # payments table rows
ANCHORS=()   # anchor table rows
FLAGS=()     # problems to call out

# ---------------------------------------------------------------- a. PostgreSQL anchor
if [[ $SKIP_PG != 1 ]]; then
  PG_ROOT=$WORK/pg
  mkdir -p "$PG_ROOT/data" "$PG_ROOT/sock"
  [[ $EUID -eq 0 ]] && chown -R postgres: "$PG_ROOT" && chmod 755 "$WORK"
  chmod 700 "$PG_ROOT/data"
  PG_DATA=$PG_ROOT/data
  ANCHOR_PORT=$(free_port)
  log "PostgreSQL: initdb, port $ANCHOR_PORT"
  "${AS_PG[@]}" "$PGBIN/initdb" -D "$PG_DATA" -A trust -U postgres >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
  "${AS_PG[@]}" "$PG_CTL" -D "$PG_DATA" -l "$PG_ROOT/server.log" -w -t 60 \
    -o "-p $ANCHOR_PORT -k $PG_ROOT/sock -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on" \
    start >/dev/null || { cat "$PG_ROOT/server.log" >&2; die "PostgreSQL did not start"; }
  PGV=$("$PGBIN/postgres" --version | awk '{print $3}')
  PGARGS=(-h "$PG_ROOT/sock" -p "$ANCHOR_PORT" -U postgres)
  log "pgbench -i -s $PG_SCALE"
  timeout 600 "${AS_PG[@]}" "$PGBENCH" "${PGARGS[@]}" -i -s "$PG_SCALE" -q postgres >"$WORK/pgbench-init.log" 2>&1 ||
    { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }
  pg_quiet=$(wait_quiet)
  log "pgbench -c $PG_CLIENTS -j 2 -T $PG_DURATION (load $(loadavg), busy $pg_quiet cores)"
  timeout $((PG_DURATION + 120)) "${AS_PG[@]}" "$PGBENCH" "${PGARGS[@]}" -c "$PG_CLIENTS" -j 2 \
    -T "$PG_DURATION" postgres >"$WORK/pgbench.log" 2>&1 ||
    { cat "$WORK/pgbench.log" >&2; die "pgbench failed"; }
  PG_TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.log" | head -1)
  PG_LAT=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$WORK/pgbench.log")
  PG_FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/pgbench.log")
  log "pgbench: $PG_TPS tps, $PG_LAT ms avg"
  ANCHORS+=("| PostgreSQL $PGV pgbench TPC-B, $PG_CLIENTS clients, -j 2, Unix socket, fsync + synchronous_commit on, ${PG_DURATION}s | $(printf %.0f "$PG_TPS") tps | avg $PG_LAT ms | failed: ${PG_FAILED:-0} | busy cores before: $pg_quiet |")
  "${AS_PG[@]}" "$PG_CTL" -D "$PG_DATA" -m fast -w stop >/dev/null
  PG_DATA=""
  rm -rf "$PG_ROOT"
fi

# ---------------------------------------------------------------- b + c. paytool serve
run_no=0
for shards in $SHARDS; do
  start_server "$shards"
  KEYS=$(make_merchants "$shards" "$ADMIN")

  # c. HTTP-stack anchor on this server: trivial GET, one wrk thread.
  hs=$(to_seconds "$HEALTH_DURATION")
  h_quiet=$(wait_quiet)
  log "wrk -t1 -c64 -d$HEALTH_DURATION GET /healthz (shards=$shards, load $(loadavg), busy $h_quiet cores)"
  timeout $((hs + 60)) wrk -t1 -c64 -d"$HEALTH_DURATION" --latency "http://$ADDR/healthz" \
    >"$WORK/healthz-$shards.txt" 2>&1 || die "wrk /healthz failed: $(cat "$WORK/healthz-$shards.txt")"
  h_rps=$(awk '/^Requests\/sec:/{printf "%.0f", $2}' "$WORK/healthz-$shards.txt")
  h_p50=$(awk '$1=="50%"{print $2}' "$WORK/healthz-$shards.txt")
  h_p99=$(awk '$1=="99%"{print $2}' "$WORK/healthz-$shards.txt")
  h_bad=$(awk '/Non-2xx/{print $NF}' "$WORK/healthz-$shards.txt")
  ANCHORS+=("| wrk -t1 -c64 GET /healthz, paytool serve --shards $shards, $HEALTH_DURATION | $h_rps req/s | p50 $h_p50, p99 $h_p99 | non-2xx: ${h_bad:-0} | busy cores before: $h_quiet |")

  for conns in $CONNS; do
    run_no=$((run_no + 1))
    tag="r$STAMP-$run_no"
    ds=$(to_seconds "$DURATION")
    curl -sS --max-time 10 "http://$ADDR/metrics" >"$WORK/m-before.txt"
    audit_before=$(curl -sS --max-time 120 -H "Authorization: Bearer $ADMIN" "http://$ADDR/v1/admin/audit")
    pay_before=$(jq .payments <<<"$audit_before")
    quiet=$(wait_quiet)
    load_before=$(loadavg)
    PERF_PID=""
    if (( PERF_OK )); then
      perf stat -x, -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -p "$SERVER_PID" \
        -o "$WORK/perf-$run_no.txt" 2>/dev/null &
      PERF_PID=$!
      sleep 0.2
    fi
    read -r busy0 total0 < <(cpu_jiffies)
    srv0=$(proc_jiffies "$SERVER_PID")
    log "wrk -t$THREADS -c$conns -d$DURATION POST /v1/payments (shards=$shards, load $load_before)"
    TIMEFORMAT='%U %S'
    { time BENCH_KEYS=$KEYS BENCH_RUN=$tag timeout $((ds + 60)) \
        wrk -t"$THREADS" -c"$conns" -d"$DURATION" --timeout 10s --latency \
        -s "$ROOT/bench/payments.lua" "http://$ADDR" \
        >"$WORK/wrk-$run_no.txt" 2>"$WORK/wrk-$run_no.err" || log "wrk exited with status $?"; } \
      2>"$WORK/wrk-$run_no.time"
    read -r busy1 total1 < <(cpu_jiffies)
    srv1=$(proc_jiffies "$SERVER_PID")
    load_after=$(loadavg)
    fsyncs="-"
    if [[ -n $PERF_PID ]]; then
      kill -INT "$PERF_PID" 2>/dev/null || true
      wait "$PERF_PID" 2>/dev/null || true
      fsyncs=$(awk -F, '/sys_enter_f/{s+=$1} END{print s+0}' "$WORK/perf-$run_no.txt")
    fi
    read -r wrk_user wrk_sys < <(tail -1 "$WORK/wrk-$run_no.time")
    curl -sS --max-time 10 "http://$ADDR/metrics" >"$WORK/m-after.txt"
    audit=$(curl -sS --max-time 300 -H "Authorization: Bearer $ADMIN" "http://$ADDR/v1/admin/audit")
    audit_ok=$(jq .ok <<<"$audit")
    pay_after=$(jq .payments <<<"$audit")
    payments=$((pay_after - pay_before))

    line=$(grep '^BENCH ' "$WORK/wrk-$run_no.txt") || { cat "$WORK/wrk-$run_no.txt" "$WORK/wrk-$run_no.err" >&2; die "wrk printed no BENCH line"; }
    declare -A r=()
    for kv in ${line#BENCH }; do r[${kv%%=*}]=${kv#*=}; done
    errors=$(( r[errors_connect] + r[errors_read] + r[errors_write] + r[errors_timeout] ))
    ok=$(( r[requests] - r[non200] ))
    secs=$(awk -v d="${r[duration_us]}" 'BEGIN{print d/1e6}')
    ok_rps=$(awk -v n="$ok" -v s="$secs" 'BEGIN{printf "%.0f", n/s}')
    p50=$(awk -v u="${r[p50_us]}" 'BEGIN{printf "%.2f", u/1000}')
    p99=$(awk -v u="${r[p99_us]}" 'BEGIN{printf "%.2f", u/1000}')
    bsum=$(awk -v a="$(metric_sum "$WORK/m-after.txt" paytool_group_commit_batch_size_sum)" \
               -v b="$(metric_sum "$WORK/m-before.txt" paytool_group_commit_batch_size_sum)" 'BEGIN{print a-b}')
    bcnt=$(awk -v a="$(metric_sum "$WORK/m-after.txt" paytool_group_commit_batch_size_count)" \
               -v b="$(metric_sum "$WORK/m-before.txt" paytool_group_commit_batch_size_count)" 'BEGIN{print a-b}')
    csum=$(awk -v a="$(metric_sum "$WORK/m-after.txt" paytool_group_commit_seconds_sum)" \
               -v b="$(metric_sum "$WORK/m-before.txt" paytool_group_commit_seconds_sum)" 'BEGIN{print a-b}')
    mean_batch=$(awk -v s="$bsum" -v c="$bcnt" 'BEGIN{ if (c>0) printf "%.1f", s/c; else print "-" }')
    per_fsync=$(awk -v n="$payments" -v f="$fsyncs" 'BEGIN{ if (f+0>0) printf "%.1f", n/f; else print "-" }')
    mean_commit=$(awk -v s="$csum" -v c="$bcnt" 'BEGIN{ if (c>0) printf "%.2f", s/c*1000; else print "-" }')
    # CPU: the server's, wrk's, and the rest of the machine (other users' work), in cores.
    srv_cores=$(awk -v j=$((srv1 - srv0)) -v hz="$HZ" -v s="$secs" 'BEGIN{printf "%.2f", j/hz/s}')
    wrk_cores=$(awk -v u="$wrk_user" -v y="$wrk_sys" -v s="$secs" 'BEGIN{printf "%.2f", (u+y)/s}')
    all_cores=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$NPROC" 'BEGIN{printf "%.2f", b/t*n}')
    other_cores=$(awk -v a="$all_cores" -v s="$srv_cores" -v w="$wrk_cores" 'BEGIN{o=a-s-w; if (o<0) o=0; printf "%.2f", o}')
    srv_us=$(awk -v j=$((srv1 - srv0)) -v hz="$HZ" -v n="$payments" 'BEGIN{ if (n>0) printf "%.0f", j/hz/n*1e6; else print "-" }')

    goal=no
    if (( ok_rps >= GOAL_RPS )) && awk -v p="$p99" -v g="$GOAL_P99_MS" 'BEGIN{exit !(p < g)}' \
       && (( r[non200] == 0 && errors == 0 )) && [[ $audit_ok == true ]]; then goal=yes; fi
    flag=""
    if (( r[non200] > 0 || errors > 0 )); then
      flag=" **ERRORS**"
      FLAGS+=("shards=$shards c=$conns: ${r[non200]} non-200 responses, $errors socket errors (connect ${r[errors_connect]}, read ${r[errors_read]}, write ${r[errors_write]}, timeout ${r[errors_timeout]}); first ones: $(head -c 300 "$WORK/wrk-$run_no.err" | tr '\n' ' ')")
    fi
    if [[ $audit_ok != true ]]; then
      flag="$flag **AUDIT FAILED**"
      FLAGS+=("shards=$shards c=$conns: audit not ok: $(jq -c '[.checks[] | select(.ok|not)]' <<<"$audit" | head -c 500)")
    fi
    # Which shards' writers export the batch histogram (not every one may).
    seen=$(sed -n 's/^paytool_group_commit_batch_size_count{shard="\([0-9]*\)"}.*/\1/p' "$WORK/m-after.txt" | sort -n | tr '\n' ' ')
    seen=${seen% }
    if [[ -z $seen ]]; then
      FLAGS+=("shards=$shards c=$conns: /metrics has no paytool_group_commit_batch_size series at all, so the mean batch is unknown (payments per fsync stands in)")
    elif (( $(wc -w <<<"$seen") < shards )); then
      mean_batch="$mean_batch (shard ${seen// /,} only)"
      mean_commit="$mean_commit (shard ${seen// /,} only)"
      FLAGS+=("shards=$shards c=$conns: /metrics exports paytool_group_commit_batch_size for shard(s) $seen only, of $shards")
    fi
    if (( payments < ok )); then
      FLAGS+=("shards=$shards c=$conns: the audit counts $payments new payments but $ok were answered 200")
    fi
    log "shards=$shards c=$conns: $ok_rps ok/s, p50 $p50 ms, p99 $p99 ms, non-200 ${r[non200]}, errors $errors, payments $payments, audit $audit_ok, batch $mean_batch"
    ROWS+=("| $shards | $conns | $ok_rps | $p50 | $p99 | ${r[non200]} / $errors$flag | $payments | $audit_ok | $mean_batch | $mean_commit | $fsyncs | $per_fsync | $srv_us | $srv_cores / $wrk_cores / $other_cores | $quiet | $load_before | $goal |")
    unset r
  done
  stop_server
done

# ---------------------------------------------------------------- report
{
  echo "## paytool serve benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $NPROC cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
  echo "- paytool: $BUILT_FROM, release build; $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "- command: \`${BUILD_REF:+BUILD_REF=$BUILD_REF }DURATION=$DURATION HEALTH_DURATION=$HEALTH_DURATION PG_DURATION=$PG_DURATION SHARDS=\"$SHARDS\" CONNS=\"$CONNS\" THREADS=$THREADS MERCHANTS=$MERCHANTS bench/serve.sh\`"
  echo "- payments: wrk -t$THREADS -c<conns> -d$DURATION --latency -s bench/payments.lua, POST /v1/payments (capture: true), unique Idempotency-Key per request, $MERCHANTS merchants balanced over the shards; fresh data dir per shard count, runs on one server back to back"
  echo
  echo "### Anchors (same invocation)"
  echo
  echo "| anchor | throughput | latency | errors | note |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${ANCHORS[@]}"
  echo
  echo "### POST /v1/payments (goal: >= $GOAL_RPS payments/s, p99 < $GOAL_P99_MS ms, no errors, audit ok)"
  echo
  echo "| shards | conns | payments/s (200s) | p50 ms | p99 ms | non-200 / socket errors | payments in audit | audit ok | mean batch | mean commit ms | fsyncs | payments per fsync | server CPU µs/payment | CPU cores server / wrk / other | busy cores before | load avg before | goal met |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
  if (( ${#FLAGS[@]} )); then
    echo
    echo "### Flagged"
    echo
    printf -- '- %s\n' "${FLAGS[@]}"
  fi
  echo
  echo "\"other\" CPU is machine-wide busy time minus the server and wrk during the run; \"busy cores before\" is the machine with the server idle just before it (both 0 on a quiet machine). fsyncs are the server's fsync + fdatasync calls (perf tracepoints): one per group commit plus checkpoints, so payments per fsync is a lower bound on the batch size."
  echo "Mean batch and commit time come from /metrics (paytool_group_commit_batch_size, paytool_group_commit_seconds) over the run, when the server exports them."
} | tee "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
