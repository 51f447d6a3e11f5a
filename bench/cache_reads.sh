#!/usr/bin/env bash
# Benchmark issue 10's read figure: `GET /v1/payments/{id}` reads/s and p99 on one
# PostgreSQL shard, side by side in one invocation on one machine:
#   1. none:  `paytool serve --layout profiles/shards/one.toml` (no Redis; API keys from the
#             store's own in-process cache, every payment read from PostgreSQL)
#   2. redis: the same with `--redis` on a local redis-server, warm (an unmeasured pass
#             first; every payment's entry is checked to be in Redis before measuring)
#   3. down:  the same with `--redis`, then that redis-server killed (SIGKILL) before the
#             measured run; reads until /metrics shows `paytool_cache_breaker_open 1`
#             (the breaker opens after 3 failures in a row), then measure
# Each run is a freshly started API server. Reported per run: reads/s (200s only), p50,
# p99, p99.9, max, non-200 and socket errors; from /metrics over the measured run the
# cache's hits and misses (paytool_cache_requests_total, kind payment and api_key), its
# errors and skipped calls and the breaker's state; PostgreSQL rows read by seq scans per
# read; CPU per read of the API, PostgreSQL and Redis. And the ratios redis ÷ none and
# down ÷ none.
# Data: one fresh PostgreSQL cluster (initdb defaults + fsync=on, synchronous_commit=on,
# 127.0.0.1), `paytool shard apply --layout profiles/shards/one.toml`
# (PAYTOOL_SHARD_S0_URL names its database), MERCHANTS merchants and PAYMENTS payments
# created through the API (capture: true, spread round-robin over the merchants), then
# VACUUM ANALYZE and CHECKPOINT. The reads (bench/reads.lua) walk every (merchant key,
# payment id) pair round-robin, each wrk thread from its own offset. redis-server:
# `--save '' --appendonly no`, 127.0.0.1, a free port.
#
# Usage: bench/cache_reads.sh        (as root, or a user who can run PostgreSQL)
#
# Knobs (env vars), defaults in brackets:
#   DURATION [15s]       wrk duration of each measured run (cached payments live 9-10
#                        min: a DURATION near that measures refills too)
#   WARMUP [5s]          unmeasured wrk run before each measured one (same for all three)
#   CONNS [64]           wrk -c;  THREADS [2]  wrk -t
#   PAYMENTS [2000]      payments created, then read
#   MERCHANTS [8]        merchants they belong to (round-robin)
#   SEED_PARALLEL [8]    concurrent curl requests creating the payments
#   PAYTOOL_BIN []       use this paytool binary as it is (no build; e.g.
#                        target/debug/paytool for a try-out: figures then say debug)
#   BUILD_REF [HEAD]     git ref built from a clean `git archive` into target/bench-ref;
#                        BUILD_REF= (empty) builds the working tree instead
#   SKIP_BUILD [0]       1 uses the binary already built
#   BENCH_TMP [/tmp]     where the cluster and the logs go
#   KEEP [0]             1 keeps the cluster's files and logs after the run
#   WAIT_QUIET [600]     before each measured run (before its warm-up), wait up to this
#                        many seconds for the machine to be idle (other processes < 0.3
#                        cores); then measure anyway and say so in the results; 0 disables
# The binary is copied into the run's directory first, so a build finishing meanwhile
# cannot swap it mid-run. redis-server (and wrk, curl, jq, PostgreSQL) are installed if
# missing.
# Quick try (about a minute with a debug binary; checks the script, measures nothing):
#   PAYTOOL_BIN=target/debug/paytool DURATION=3s WARMUP=1s PAYMENTS=200 WAIT_QUIET=0 bench/cache_reads.sh
#
# Output: a markdown results block on stdout, also written to
# bench/results/cache-reads-<date>.md. Everything listens on 127.0.0.1 only; every
# process is bounded by `timeout`; a trap stops the API server, redis-server and the
# PostgreSQL cluster this script started.
set -euo pipefail
export LC_NUMERIC=C     # a decimal point in awk's output

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-5s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PAYMENTS=${PAYMENTS:-2000}
MERCHANTS=${MERCHANTS:-8}
SEED_PARALLEL=${SEED_PARALLEL:-8}
PAYTOOL_BIN=${PAYTOOL_BIN:-}
BUILD_REF=${BUILD_REF-HEAD}
SKIP_BUILD=${SKIP_BUILD:-0}
BENCH_TMP=${BENCH_TMP:-/tmp}
KEEP=${KEEP:-0}
WAIT_QUIET=${WAIT_QUIET:-600}
LAYOUT=profiles/shards/one.toml
DB=paytool_s0
SERVE_MAX=3600              # bound on an API server's life, seconds
REDIS_MAX=3600              # bound on redis-server's life, seconds (start_redis)
RUNS=(none redis down)

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d "$BENCH_TMP/paytool-cachereads.XXXXXX")
chmod 755 "$WORK"      # the postgres user writes the cluster under it
SERVER_PID=""          # `timeout` running the API server (it passes signals on)
REDIS_PID=""           # `timeout` running redis-server
AS_PG=()
PG_DATAS=()            # every cluster started, stopped by the trap
cleanup() {
  local rc=$?
  set +e
  end_process "$SERVER_PID"
  end_process "$REDIS_PID" 10
  stop_clusters
  drop_work
  exit $rc
}
trap_cleanup

# ---------------------------------------------------------------- tools, build
load_tools
find_redis
find_postgres
paytool_binary
SERVE_HELP=$("$BIN" serve --help 2>&1) || true
grep -q -- '--redis ' <<<"$SERVE_HELP" || die "$BIN has no \`serve --redis\`"
PGV=$("$PGBIN/postgres" --version | awk '{print $3}')

STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$ROOT/bench/results"
RESULTS=$ROOT/bench/results/cache-reads-$STAMP.md
ROWS=(); FLAGS=(); QUIET_NOTES=()
Q=""
declare -A RPS P99 P50

# ---------------------------------------------------------------- PostgreSQL, shard
PG_OPTS="-c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on"
pg_start pg
pg_sql pg postgres "CREATE DATABASE $DB" >/dev/null
export PAYTOOL_SHARD_S0_URL="postgres://postgres@127.0.0.1:${PG_PORT[pg]}/$DB"
log "paytool shard apply --layout $LAYOUT"
timeout 120 "$BIN" shard apply --layout "$LAYOUT" >"$WORK/apply.log" 2>&1 ||
  { cat "$WORK/apply.log" >&2; die "shard apply failed"; }
# The postmaster and its children (backends, walwriter, checkpointer, ...).
pg_pids() {
  local pm
  pm=$(head -1 "${PG_DIR[pg]}/postmaster.pid")
  echo "$pm"; ps -o pid= --ppid "$pm" | tr -d ' '
}
SEQ_READ="SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables"

# ---------------------------------------------------------------- redis-server
# start_redis, kill_redis, redis_cli: lib.sh.
start_redis

# ---------------------------------------------------------------- API server
ADMIN_TOKEN=adm_bench_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
ADDR=""
SERVER_CHILD=""        # paytool itself (SERVER_PID is its `timeout`)
start_server() {   # LABEL [--redis URL]
  local label=$1; shift
  PAYTOOL_ADMIN_TOKEN=$ADMIN_TOKEN timeout "$SERVE_MAX" "$BIN" serve --layout "$LAYOUT" \
    --listen 127.0.0.1:0 --data-dir "$WORK/data-$label" "$@" \
    >"$WORK/serve-$label.out" 2>"$WORK/serve-$label.err" &
  SERVER_PID=$!
  await_listening "$SERVER_PID" "$WORK/serve-$label.out" "$WORK/serve-$label.err"
  SERVER_CHILD=$(ps -o pid= --ppid "$SERVER_PID" | tr -d ' ')
  [[ -n $SERVER_CHILD ]] || die "no paytool process under $SERVER_PID"
  log "paytool serve --layout $LAYOUT $* ($label) on $ADDR"
}
metrics() { curl -sS --max-time 10 "http://$ADDR/metrics" >"$1" || die "GET /metrics failed"; }
# Sum of a series whose labels include LABEL1 and LABEL2 (either may be empty).
mget() {   # FILE NAME [LABEL1] [LABEL2]
  awk -v m="$2" -v a="${3:-}" -v b="${4:-}" '$1 ~ "^"m"({|$)" && (a == "" || index($1, a)) && (b == "" || index($1, b)) {s += $2}
    END {printf "%.0f", s + 0}' "$1"
}
breaker() { awk '$1 == "paytool_cache_breaker_open" {v = $2} END {print (v == "" ? "-" : v)}' "$1"; }

# ---------------------------------------------------------------- merchants, payments
start_server seed
KEYS_CSV=$(make_merchants 1 "$ADMIN_TOKEN")
IFS=, read -r -a KEYS <<<"$KEYS_CSV"
PAIRS=$WORK/pairs.txt
log "creating $PAYMENTS payments over ${#KEYS[@]} merchants ($SEED_PARALLEL at a time)"
export ADDR
export PAY_BODY='{"amount":2500,"currency":"usd","card":{"number":"4242424242424242","exp_month":12,"exp_year":2034},"capture":true}'
SEED_T0=$(date +%s.%N)
# One line per payment: "<merchant key> <payment id>", or "ERROR <answer>".
# shellcheck disable=SC2016  # $1, $2, $ADDR and $PAY_BODY are the inner shell's
for ((i = 0; i < PAYMENTS; i++)); do echo "${KEYS[i % ${#KEYS[@]}]} c$STAMP-$i"; done |
  timeout 1800 xargs -P "$SEED_PARALLEL" -n 2 sh -c '
    body=$(curl -sS --max-time 30 -X POST "http://$ADDR/v1/payments" -H "Authorization: Bearer $1" \
      -H "Idempotency-Key: $2" -H "Content-Type: application/json" -d "$PAY_BODY" 2>&1)
    id=$(printf "%s" "$body" | jq -r ".id // empty" 2>/dev/null)
    case $id in
      pay_*) printf "%s %s\n" "$1" "$id" ;;
      *) printf "ERROR %s\n" "$(printf "%s" "$body" | head -c 200 | tr "\n" " ")" ;;
    esac' sh >"$PAIRS.all" || log "payment creation: xargs exited with status $?"
SEED_SECONDS=$(awk -v a="$SEED_T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
grep -v '^ERROR' "$PAIRS.all" >"$PAIRS" || true
CREATED=$(wc -l <"$PAIRS")
if (( CREATED < PAYMENTS )); then
  grep -m3 '^ERROR' "$PAIRS.all" >&2 || true
  die "created $CREATED of $PAYMENTS payments"
fi
IN_DB=$(pg_sql pg "$DB" "SELECT count(*) FROM payments")
(( IN_DB == PAYMENTS )) || die "the shard holds $IN_DB payments, $PAYMENTS were created"
log "$CREATED payments in ${SEED_SECONDS}s"
stop_server
pg_sql pg "$DB" "VACUUM ANALYZE" >/dev/null
pg_sql pg postgres "CHECKPOINT" >/dev/null

# ---------------------------------------------------------------- the three runs
wrk_reads() {   # OUT DURATION: reads.lua over every pair; OUT.txt, OUT.err
  local secs; secs=$(to_seconds "$2")
  BENCH_PAIRS=$PAIRS timeout $((secs + 60)) wrk -t"$THREADS" -c"$CONNS" -d"$2" --timeout 10s --latency \
    -s "$ROOT/bench/reads.lua" "http://$ADDR" >"$1.txt" 2>"$1.err" || log "wrk exited with status $?"
}
paykeys() { redis_cli --scan --pattern 'paytool:*:pay:*' | wc -l; }

run() {   # LABEL
  local label=$1 out=$WORK/wrk-$1 redis_state="-" breaker_note="" cached="-"
  case $label in
    none) start_server "$label" ;;
    *) start_server "$label" --redis "redis://127.0.0.1:$REDIS_PORT/" ;;
  esac
  quiet_check "$label"; local q=$Q
  log "$label: warm-up, wrk -t$THREADS -c$CONNS -d$WARMUP (unmeasured)"
  wrk_reads "$out-warm" "$WARMUP"
  if [[ $label == redis ]]; then
    # The cache must hold every payment before the measured run; a pass over the ones
    # the warm-up did not reach fills it (one GET each).
    cached=$(paykeys)
    if (( cached < PAYMENTS )); then
      log "redis: $cached of $PAYMENTS payments cached after the warm-up; one GET for each"
      # shellcheck disable=SC2016  # $1, $2 and $ADDR are the inner shell's
      timeout 600 xargs -P 4 -n 2 sh -c 'curl -sS -o /dev/null --max-time 10 -H "Authorization: Bearer $1" "http://$ADDR/v1/payments/$2"' sh \
        <"$PAIRS" || log "fill pass: xargs exited with status $?"
      cached=$(paykeys)
    fi
    (( cached >= PAYMENTS )) || FLAGS+=("redis: only $cached of $PAYMENTS payments were in Redis before the measured run")
    log "redis: $cached payment entries in Redis"
    redis_state="up, $cached of $PAYMENTS payments cached"
  fi
  if [[ $label == down ]]; then
    kill_redis
    # Reads until the breaker is open (3 failures in a row).
    local b="-" tries=0 key id
    read -r key id <"$PAIRS"
    while (( tries < 100 )); do
      tries=$((tries + 1))
      curl -sS -o /dev/null --max-time 10 -H "Authorization: Bearer $key" "http://$ADDR/v1/payments/$id" || true
      metrics "$out.mb"; b=$(breaker "$out.mb")
      [[ $b == 1 ]] && break
    done
    if [[ $b == 1 ]]; then
      breaker_note="open after $tries read(s)"
      log "down: paytool_cache_breaker_open 1 after $tries read(s)"
    else
      breaker_note="**not open** after $tries reads (gauge $b)"
      FLAGS+=("down: the breaker did not open: paytool_cache_breaker_open $b after $tries reads with Redis killed")
    fi
    redis_state="killed; breaker $breaker_note"
  fi
  [[ $label == none ]] && redis_state="not used"

  metrics "$out.m0"
  local sr0 sr1; sr0=$(pg_sql pg "$DB" "$SEQ_READ")
  local -a pgp; mapfile -t pgp < <(pg_pids)
  local busy0 total0 busy1 total1 srv0 srv1 pg0 pg1 rd0=0 rd1=0
  read -r busy0 total0 < <(cpu_jiffies); srv0=$(proc_jiffies "$SERVER_CHILD"); pg0=$(procs_jiffies "${pgp[@]}")
  [[ -n $REDIS_CHILD ]] && rd0=$(proc_jiffies "$REDIS_CHILD")
  local load_before; load_before=$(loadavg)
  log "$label: wrk -t$THREADS -c$CONNS -d$DURATION --latency GET /v1/payments/{id} (load $load_before, busy $q cores)"
  TIMEFORMAT='%U %S'
  { time wrk_reads "$out" "$DURATION"; } 2>"$out.time"
  read -r busy1 total1 < <(cpu_jiffies); srv1=$(proc_jiffies "$SERVER_CHILD")
  local -a pgp1; mapfile -t pgp1 < <(pg_pids)
  local -a pgall; mapfile -t pgall < <(printf '%s\n' "${pgp[@]}" "${pgp1[@]}" | sort -un)
  pg1=$(procs_jiffies "${pgall[@]}")
  [[ -n $REDIS_CHILD ]] && rd1=$(proc_jiffies "$REDIS_CHILD")
  metrics "$out.m1"
  sleep 1.2   # backends flush their statistics at most once a second
  sr1=$(pg_sql pg "$DB" "$SEQ_READ")
  local wrk_user wrk_sys; read -r wrk_user wrk_sys < <(tail -1 "$out.time")
  [[ $label == redis ]] && redis_state="$redis_state; $(paykeys) after"
  stop_server

  local line; line=$(grep '^BENCH ' "$out.txt") || { cat "$out.txt" "$out.err" >&2; die "wrk printed no BENCH line"; }
  declare -A r=(); local kv
  for kv in ${line#BENCH }; do r[${kv%%=*}]=${kv#*=}; done
  local sock=$(( r[errors_connect] + r[errors_read] + r[errors_write] + r[errors_timeout] ))
  local ok=$(( r[requests] - r[non200] ))
  local secs; secs=$(awk -v d="${r[duration_us]}" 'BEGIN{print d/1e6}')
  RPS[$label]=$(awk -v n="$ok" -v s="$secs" 'BEGIN{printf "%.0f", n/s}')
  ms() { awk -v u="$1" 'BEGIN{printf "%.2f", u/1000}'; }
  P50[$label]=$(ms "${r[p50_us]}"); P99[$label]=$(ms "${r[p99_us]}")
  d() { echo $(( $(mget "$out.m1" "$@") - $(mget "$out.m0" "$@") )); }
  local ph pm kh km errs skipped
  ph=$(d paytool_cache_requests_total 'kind="payment"' 'result="hit"')
  pm=$(d paytool_cache_requests_total 'kind="payment"' 'result="miss"')
  kh=$(d paytool_cache_requests_total 'kind="api_key"' 'result="hit"')
  km=$(d paytool_cache_requests_total 'kind="api_key"' 'result="miss"')
  errs=$(d paytool_cache_errors_total); skipped=$(d paytool_cache_skipped_total)
  local ratio_hit; ratio_hit=$(awk -v h="$ph" -v m="$pm" 'BEGIN{ if (h+m>0) printf "%.1f%%", h/(h+m)*100; else print "-" }')
  local b_end; b_end=$(breaker "$out.m1")
  local seq_per_read; seq_per_read=$(awk -v t=$((sr1 - sr0)) -v n="$ok" 'BEGIN{ if (n>0) printf "%.2f", t/n; else print "-" }')
  per_read() { awk -v j="$1" -v hz="$HZ" -v n="$ok" 'BEGIN{ if (n>0) printf "%.0f", j/hz/n*1e6; else print "-" }'; }
  cores() { awk -v j="$1" -v hz="$HZ" -v s="$secs" 'BEGIN{printf "%.2f", j/hz/s}'; }
  local srv_us pg_us rd_us srv_c pg_c rd_c wrk_c all_c other_c
  srv_us=$(per_read $((srv1 - srv0))); pg_us=$(per_read $((pg1 - pg0))); rd_us=$(per_read $((rd1 - rd0)))
  srv_c=$(cores $((srv1 - srv0))); pg_c=$(cores $((pg1 - pg0))); rd_c=$(cores $((rd1 - rd0)))
  wrk_c=$(awk -v u="$wrk_user" -v y="$wrk_sys" -v s="$secs" 'BEGIN{printf "%.2f", (u+y)/s}')
  all_c=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$NPROC" 'BEGIN{printf "%.2f", b/t*n}')
  other_c=$(awk -v a="$all_c" -v s="$srv_c" -v p="$pg_c" -v r="$rd_c" -v w="$wrk_c" 'BEGIN{o=a-s-p-r-w; if (o<0) o=0; printf "%.2f", o}')
  local flag=""
  if (( r[non200] + sock > 0 )); then
    flag=" **ERRORS**"
    FLAGS+=("$label: ${r[non200]} non-200, $sock socket errors (connect ${r[errors_connect]}, read ${r[errors_read]}, write ${r[errors_write]}, timeout ${r[errors_timeout]}); first: $(head -c 300 "$out.err" | tr '\n' ' ')")
  fi
  if [[ $label == redis ]] && (( pm > 0 )); then
    FLAGS+=("redis: $pm payment misses during the measured run (hit ratio $ratio_hit) though every payment was cached before it")
  fi
  if [[ $label == down ]] && (( ph > 0 )); then
    FLAGS+=("down: $ph payment hits with Redis killed")
  fi
  if [[ $label == down && $b_end != 1 ]]; then
    FLAGS+=("down: paytool_cache_breaker_open is $b_end at the end of the measured run (0.5: a probe in flight)")
  fi
  log "$label: ${RPS[$label]} reads/s, p50 ${P50[$label]} p99 ${P99[$label]} ms, non-200 ${r[non200]}, socket errors $sock, payment hits/misses $ph/$pm, api_key $kh/$km, cache errors $errs, skipped $skipped, breaker $b_end, CPU API $srv_c pg $pg_c redis $rd_c wrk $wrk_c other $other_c"
  ROWS+=("| $label | $redis_state | $(th "${r[requests]}") | **$(th "${RPS[$label]}")** | ${P50[$label]} | **${P99[$label]}** | $(ms "${r[p999_us]}") | $(ms "${r[max_us]}") | ${r[non200]} / $sock$flag | $(th "$ph") / $(th "$pm") ($ratio_hit) | $(th "$kh") / $(th "$km") | $(th "$errs") / $(th "$skipped") | $b_end | $seq_per_read | $srv_us / $pg_us / $rd_us | $srv_c / $pg_c / $rd_c / $wrk_c / $other_c | $q | $load_before |")
  unset r
}
for label in "${RUNS[@]}"; do run "$label"; done

# ---------------------------------------------------------------- report
if [[ -n $PAYTOOL_BIN ]]; then CMD_PREFIX="PAYTOOL_BIN=$PAYTOOL_BIN "
elif [[ -n $BUILD_REF ]]; then CMD_PREFIX="BUILD_REF=$BUILD_REF "
else CMD_PREFIX="BUILD_REF= "; fi
[[ -z $PAYTOOL_BIN && $SKIP_BUILD == 1 ]] && CMD_PREFIX+="SKIP_BUILD=1 "
{
  echo "## GET /v1/payments/{id} with and without Redis (issue 10), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $NPROC cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); wrk, the API, PostgreSQL and Redis on the same cores"
  echo "- paytool: $BUILT_FROM; PostgreSQL $PGV (one fresh cluster, initdb defaults + fsync=on, synchronous_commit=on, 127.0.0.1) as the one shard of \`$LAYOUT\`; Redis $REDISV (\`--save '' --appendonly no\`, 127.0.0.1); $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "- command: \`${CMD_PREFIX}DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS THREADS=$THREADS PAYMENTS=$PAYMENTS MERCHANTS=$MERCHANTS WAIT_QUIET=$WAIT_QUIET bench/cache_reads.sh\`"
  echo "- data: $PAYMENTS payments (capture: true) created through the API in ${SEED_SECONDS}s over $MERCHANTS merchants, then VACUUM ANALYZE and CHECKPOINT. Reads: \`wrk -t$THREADS -c$CONNS -d$DURATION --timeout 10s --latency -s bench/reads.lua\`, GET /v1/payments/{id} with the owning merchant's key, every payment in turn (round-robin, each thread from its own offset); each run on a freshly started \`paytool serve --layout $LAYOUT\` after a $WARMUP unmeasured warm-up of the same reads"
  echo
  echo "### Side by side"
  echo
  echo "| run | reads/s (200s) | ÷ none | p50 ms | p99 ms | p99 ÷ none |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for label in "${RUNS[@]}"; do
    echo "| $label | **$(th "${RPS[$label]}")** | $(ratio "${RPS[$label]}" "${RPS[none]}") | ${P50[$label]} | ${P99[$label]} | $(ratio "${P99[$label]}" "${P99[none]}") |"
  done
  echo
  echo "With Redis ÷ without: **$(ratio "${RPS[redis]}" "${RPS[none]}")×** reads/s; Redis down (breaker open) ÷ without: **$(ratio "${RPS[down]}" "${RPS[none]}")×**."
  echo
  echo "### Per run"
  echo
  echo "none: no \`--redis\`. redis: \`--redis redis://127.0.0.1:<port>/\`, warm. down: \`--redis\` to the same Redis, killed (SIGKILL) after the warm-up, then reads until the breaker opened. Cache counts are /metrics deltas over the measured run (paytool_cache_requests_total by kind, paytool_cache_errors_total, paytool_cache_skipped_total); breaker: paytool_cache_breaker_open at the end (1 open, 0.5 a probe in flight, 0 closed, - no cache)."
  echo
  echo "| run | Redis | requests | reads/s (200s) | p50 ms | p99 ms | p99.9 ms | max ms | non-200 / socket errors | payment hits / misses (hit ratio) | api_key hits / misses | cache errors / skipped calls | breaker | seq-scan rows per read | CPU µs/read API / PostgreSQL / Redis | CPU cores API / PostgreSQL / Redis / wrk / other | busy cores before | load avg before |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
  if (( ${#FLAGS[@]} )); then echo; echo "### Flagged"; echo; printf -- '- %s\n' "${FLAGS[@]}"; fi
  echo
  quiet_summary
  echo "\"other\" CPU is machine-wide busy time minus the API server, PostgreSQL (every process of the cluster), Redis and wrk during the run. Seq-scan rows per read: pg_stat_user_tables.seq_tup_read over the run ÷ reads (0 when every lookup uses an index; statistics flush about once a second: approximate)."
} | tee "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
