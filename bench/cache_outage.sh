#!/usr/bin/env bash
# Benchmark issue 10's outage figure: "the API's p99 during a Redis outage stays within 3x
# of the run with Redis". The same open-model load (bench/cache-outage.toml: RATE
# arrivals/s of checkout 5 : browse 4 : retry_storm 1, 64 connections, 16 merchants) is
# run by `paytool loadtest` against one reference API instance on one PostgreSQL shard
# (profiles/shards/one.toml, a throwaway server paytool spawns), with this script's own
# redis-server in front of it (target.redis = "existing", PAYTOOL_REDIS_URL), three ways:
#   1. up:     redis-server runs the whole time
#   2. down:   redis-server killed (SIGKILL) before the run starts: the API's cache
#              breaker opens on the first failures and PostgreSQL serves the whole run
#   3. midway: redis-server runs; once the load reaches it (DBSIZE > 0) and a third of
#              RUN_TIME more has passed it is killed (SIGKILL), and OUTAGE later started
#              again, empty, on the same port
# Each run is a separate `paytool loadtest` (fresh PostgreSQL, fresh API, fresh empty
# Redis), in the order up, down, midway, ROUNDS times. Reported per run, from its JSON
# summary: every request's count, p50, p95, p99, max and errors (and all requests
# together); the money audit; the cache's hits, misses, hit ratio and whether the breaker
# opened (server.cache); how well the arrival schedule was kept (open_model). Then the
# ratios p99(down) ÷ p99(up) and p99(midway) ÷ p99(up); the goal is ≤ 3.
# "midway"'s p99 is over the whole run (before, during and after the outage); "down"'s is
# the p99 during an outage.
#
# Usage: bench/cache_outage.sh        (as root, or a user who can run PostgreSQL)
#
# Knobs (env vars), defaults in brackets:
#   RATE [1000/s]        arrivals per second, the same in every run (--rate); an arrival
#                        is one whole journey (browse is 4 requests, a retry storm 6)
#   RUN_TIME [30s]       length of each run's arrival schedule (--run-time)
#   OUTAGE [10s]         midway: how long redis-server stays down; a third of RUN_TIME
#                        plus OUTAGE must be shorter than RUN_TIME
#   ROUNDS [1]           times the three runs are repeated (up, down, midway, up, ...)
#   LOAD_WAIT [180]      midway: at most this many seconds from the start of `paytool
#                        loadtest` (it spawns PostgreSQL first) until Redis holds a key
#   PAYTOOL_BIN []       use this paytool binary as it is (no build; e.g.
#                        target/debug/paytool for a try-out: figures then say debug)
#   PAYTOOL_REV []       the git revision PAYTOOL_BIN was built from, for the results
#   BUILD_REF [HEAD]     git ref built from a clean `git archive` into target/bench-ref;
#                        BUILD_REF= (empty) builds the working tree instead
#   SKIP_BUILD [0]       1 uses the binary already built
#   BENCH_TMP [/tmp]     where the runs' files go
#   KEEP [0]             1 keeps the runs' files (summaries, logs) after the run
#   WAIT_QUIET [600]     before each run, wait up to this many seconds for the machine to
#                        be idle (other processes < 0.3 cores); then measure anyway and say
#                        so in the results; 0 disables
# The binary is copied into the run's directory first, so a build finishing meanwhile
# cannot swap it mid-run. redis-server (and curl, jq, PostgreSQL) are installed if
# missing.
# Quick try (about a minute with a debug binary; checks the script, measures nothing):
#   PAYTOOL_BIN=target/debug/paytool RATE=200/s RUN_TIME=12s OUTAGE=3s WAIT_QUIET=0 bench/cache_outage.sh
#
# Output: a markdown results block on stdout, also written to
# bench/results/cache-outage-<date>.md. Everything listens on 127.0.0.1 only; every
# process is bounded by `timeout`; a trap stops the load test, redis-server and any
# PostgreSQL server left under the run's directory.
set -euo pipefail
export LC_NUMERIC=C     # a decimal point in awk's output

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

RATE=${RATE:-1000/s}
RUN_TIME=${RUN_TIME:-30s}
OUTAGE=${OUTAGE:-10s}
ROUNDS=${ROUNDS:-1}
LOAD_WAIT=${LOAD_WAIT:-180}
PAYTOOL_BIN=${PAYTOOL_BIN:-}
PAYTOOL_REV=${PAYTOOL_REV:-}
BUILD_REF=${BUILD_REF-HEAD}
SKIP_BUILD=${SKIP_BUILD:-0}
BENCH_TMP=${BENCH_TMP:-/tmp}
KEEP=${KEEP:-0}
WAIT_QUIET=${WAIT_QUIET:-600}
PROFILE=bench/cache-outage.toml
LAYOUT=profiles/shards/one.toml
RUNS=(up down midway)
# Request rows reported in the side-by-side table (every row is in the per-run table).
SIDE=("POST /v1/payments" "GET /v1/payments/{id}")

RUN_S=$(to_seconds "$RUN_TIME")
OUTAGE_S=$(to_seconds "$OUTAGE")
[[ $RUN_S =~ ^[0-9]+$ && $OUTAGE_S =~ ^[0-9]+$ ]] || die "RUN_TIME and OUTAGE are whole seconds, minutes or hours (30s, 2m)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: a whole number, 1 or more"
THIRD_S=$(awk -v s="$RUN_S" 'BEGIN{printf "%.1f", s/3}')
awk -v t="$THIRD_S" -v o="$OUTAGE_S" -v s="$RUN_S" 'BEGIN{exit !(t + o < s)}' ||
  die "a third of RUN_TIME ($THIRD_S s) + OUTAGE ($OUTAGE_S s) must be shorter than RUN_TIME ($RUN_S s)"
LT_MAX=$((RUN_S + 600))     # bound on one `paytool loadtest` (spawning PostgreSQL, the audit)
REDIS_MAX=$((LT_MAX + 60))  # bound on a redis-server's life

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d "$BENCH_TMP/paytool-cacheoutage.XXXXXX")
chmod 755 "$WORK"      # the postgres user writes the spawned cluster under it
LT_PID=""              # `timeout` running `paytool loadtest` (it passes signals on)
REDIS_PID=""           # `timeout` running redis-server
SAMPLER_PID=""         # the `ps` sampler of a run (other processes' CPU)
AS_PG=()
PG_DATAS=()
cleanup() {
  local rc=$?
  set +e
  end_process "$LT_PID" 30
  end_process "$SAMPLER_PID" 5
  end_process "$REDIS_PID" 10
  # A load test stopped midway may leave its spawned PostgreSQL running under WORK.
  if [[ -n ${PG_CTL:-} ]]; then
    mapfile -t PG_DATAS < <(find "$WORK" -name postmaster.pid -printf '%h\n' 2>/dev/null)
    stop_clusters
  fi
  drop_work
  exit $rc
}
trap_cleanup

# ---------------------------------------------------------------- tools, build
load_tools
find_redis
find_postgres
paytool_binary
[[ -n $PAYTOOL_REV ]] && BUILT_FROM="$BUILT_FROM; built from $PAYTOOL_REV"
LT_HELP=$("$BIN" loadtest --help 2>&1) || true
grep -q -- '--redis <MODE>' <<<"$LT_HELP" || die "$BIN has no \`loadtest --redis\` (target.redis)"
# paytool spawns the newest installed PostgreSQL (src/services/postgres.rs).
PG_NEWEST=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null | sort -V | tail -1)
PGV=$("${PG_NEWEST:-$PGBIN/postgres}" --version | awk '{print $3}')

STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$ROOT/bench/results"
RESULTS=$ROOT/bench/results/cache-outage-$STAMP.md
ROWS=(); DETAIL=(); FLAGS=(); QUIET_NOTES=(); OTHER_NOTES=(); TIMELINE=()
Q=""
KILLED_AT=""; BACK_AT=""; OUTAGE_NOTE=""
declare -A P99 POST_P99 GET_P99

# ---------------------------------------------------------------- redis-server
# start_redis [PORT], kill_redis, stop_redis, redis_cli: lib.sh (bounded by REDIS_MAX).
dbsize() { local n; n=$(redis_cli dbsize 2>/dev/null | tr -dc 0-9) || true; echo "${n:-0}"; }

# ---------------------------------------------------------------- other processes
# The machine is shared: a quiet start does not keep others from starting work during a
# run. Every 2 s (at most LT_MAX s) `ps` lists every process and its CPU time so far.
sampler() {   # OUT
  local i
  for ((i = 0; i < LT_MAX / 2; i++)); do
    echo "@ $(date +%s)"
    ps -eo pid=,ppid=,times=,comm=,args= 2>/dev/null || true
    sleep 2
  done >"$1"
}
# From a sampler's file: the CPU (cores) of every process that is not this run's, over
# the sampled time, and the command that used most of it. This run's processes: those
# whose command line names WORK (paytool, `timeout`, PostgreSQL's postmaster, ...) and
# their children and grandchildren (redis-server, PostgreSQL's backends). CPU time is
# `ps`'s whole seconds: a rough figure, meant to catch a build or a benchmark started
# by someone else mid-run.
other_cpu() {   # FILE -> "CORES COMMAND" ("- -" without two samples)
  awk -v w="$WORK" '
    FNR == 1 { pass++; n = 0 }
    /^@ / { n++; if (pass == 4) { if (t0 == "") t0 = $2; t1 = $2 }; next }
    pass == 1 { if (index($0, w)) ours[$1] = 1; next }
    pass <= 3 { if ($2 in ours) ours[$1] = 1; next }
    $1 in ours { next }
    {
      key = $1 " " $4
      if (!(key in hi)) { lo[key] = (n == 1 ? $3 : 0); comm[key] = $4 }
      hi[key] = $3
    }
    END {
      if (t1 == "" || t1 <= t0) { print "- -"; exit }
      for (k in hi) { d = hi[k] - lo[k]; total += d; by[comm[k]] += d }
      top = "-"; for (c in by) if (by[c] > max) { max = by[c]; top = c }
      printf "%.2f %s\n", total / (t1 - t0), (max > 0 ? top : "-")
    }' "$1" "$1" "$1" "$1"
}

# ---------------------------------------------------------------- one run
# midway, while the load test runs: wait for the load to reach Redis, a third of RUN_TIME,
# kill it, wait OUTAGE, start it again (empty) on the same port. Sets OUTAGE_NOTE.
outage_midway() {   # LABEL T0
  local label=$1 t0=$2 waited=0 t_load t_kill t_back port=$REDIS_PORT
  OUTAGE_NOTE=""
  while (( $(dbsize) == 0 )); do
    kill -0 "$LT_PID" 2>/dev/null || break
    (( waited >= LOAD_WAIT * 10 )) && break
    sleep 0.1; waited=$((waited + 1))
  done
  if (( $(dbsize) == 0 )); then
    FLAGS+=("$label: the load never reached Redis (DBSIZE 0 after $(since "$t0") s); Redis was not killed")
    OUTAGE_NOTE="**no outage**: the load never reached Redis"
    return
  fi
  t_load=$(since "$t0")
  log "$label: the load reached Redis at +${t_load}s; killing it in ${THIRD_S}s"
  sleep "$THIRD_S"
  kill -0 "$LT_PID" 2>/dev/null || FLAGS+=("$label: the load test ended before Redis was killed")
  kill_redis; KILLED_AT=$(now); t_kill=$(since "$t0")
  sleep "$OUTAGE_S"
  kill -0 "$LT_PID" 2>/dev/null || FLAGS+=("$label: the load test ended before Redis came back")
  start_redis "$port"; BACK_AT=$(now); t_back=$(since "$t0")
  log "$label: redis-server back (empty) on port $port at +${t_back}s"
  OUTAGE_NOTE="killed +${t_kill}s, back +${t_back}s after start"
  TIMELINE+=("$label: Redis first held a key ${t_load} s after \`paytool loadtest\` started (it spawns PostgreSQL and creates the merchants first), was killed at +${t_kill} s and started again (empty, same port) at +${t_back} s")
}
# Where the outage fell in the arrival schedule: the schedule starts 1 s after Goose
# starts its one user (START_DELAY in src/loadtest/open_model.rs; goose.json's first
# history entry). Sets OUTAGE_NOTE; flags an outage not inside the schedule.
outage_in_schedule() {   # LABEL REPORTS_DIR
  local label=$1 goose start kill_s back_s
  goose=$(find "$2" -name goose.json | head -1)
  [[ -n $goose && -n $KILLED_AT ]] || return 0
  start=$(date -d "$(jq -r '.raw_metrics.history[0].timestamp' "$goose")" +%s.%N 2>/dev/null) || return 0
  start=$(awk -v s="$start" 'BEGIN{printf "%.3f", s + 1}')
  kill_s=$(awk -v k="$KILLED_AT" -v s="$start" 'BEGIN{printf "%.1f", k - s}')
  back_s=$(awk -v b="$BACK_AT" -v s="$start" 'BEGIN{printf "%.1f", b - s}')
  OUTAGE_NOTE="killed at ${kill_s} s, back at ${back_s} s of the ${RUN_S} s schedule"
  # Appended to outage_midway's line of this run.
  TIMELINE[-1]+="; in the arrival schedule (from 1 s after goose.json's first history entry) that is from ${kill_s} s to ${back_s} s of ${RUN_S} s"
  awk -v k="$kill_s" -v b="$back_s" -v r="$RUN_S" 'BEGIN{exit !(k > 0 && b < r)}' ||
    FLAGS+=("$label: the outage (${kill_s} s to ${back_s} s) was not inside the ${RUN_S} s schedule")
}

run() {   # LABEL ROUND
  local label=$1 round=$2 tag=$1-$2 out=$WORK/$1-$2 rc=0 t0 redis_state q load_before
  quiet_check "$tag"; q=$Q
  load_before=$(loadavg)
  start_redis
  local url="redis://127.0.0.1:$REDIS_PORT/"
  case $label in
    up) redis_state="up" ;;
    down) kill_redis; redis_state="killed before the run" ;;
    midway) redis_state="up, killed midway" ;;
  esac
  log "$tag: paytool loadtest -p $PROFILE --rate $RATE --run-time $RUN_TIME (Redis $redis_state; load $load_before, busy $q cores)"
  sampler "$out.ps" &
  SAMPLER_PID=$!
  t0=$(now)
  env -u PAYTOOL_ADMIN_TOKEN -u PAYTOOL_TARGET -u PAYTOOL_PROFILE -u PAYTOOL_REPORT_DIR \
    -u PAYTOOL_LOG -u PAYTOOL_SHARD_S0_URL PAYTOOL_REDIS_URL="$url" \
    timeout "$LT_MAX" "$BIN" loadtest -p "$PROFILE" --rate "$RATE" --run-time "$RUN_TIME" \
    --output json --report-dir "$out-reports" >"$out.json" 2>"$out.err" &
  LT_PID=$!
  KILLED_AT=""; BACK_AT=""
  [[ $label == midway ]] && outage_midway "$tag" "$t0"
  wait "$LT_PID" || rc=$?
  LT_PID=""
  if [[ $label == midway ]]; then
    outage_in_schedule "$tag" "$out-reports"
    redis_state="$redis_state ($OUTAGE_NOTE)"
  fi
  local took; took=$(since "$t0")
  end_process "$SAMPLER_PID" 5; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
  local other other_top
  read -r other other_top < <(other_cpu "$out.ps")
  if [[ $other != - ]] && awk -v c="$other" 'BEGIN{exit !(c >= 0.3)}'; then
    FLAGS+=("$tag: other processes used $other cores during the run (most: $other_top): **a busy machine**, its figures are suspect")
    OTHER_NOTES+=("$tag had $other cores of other work during it")
  fi
  local keys_after="-"
  [[ -n $REDIS_PID ]] && keys_after=$(dbsize)
  stop_redis
  jq -e '.total' "$out.json" >/dev/null 2>&1 ||
    { tail -30 "$out.err" >&2; die "$tag: paytool loadtest (exit $rc) printed no summary"; }
  log "$tag: done in ${took}s (exit $rc)"

  j() { jq -r "$1" "$out.json"; }
  p99_of() {   # NAME -> that request's p99 ms, "-" when it has none
    jq -r --arg n "$1" '[.requests[] | select(.name == $n) | .p99_ms][0] // "-"' "$out.json"
  }
  local count p50 p99 max errors
  read -r count p50 p99 max errors < <(j '.total | [.count, .p50_ms, .p99_ms, .max_ms, .errors] | join(" ")')
  P99[$tag]=$p99
  local pp99 gp99
  pp99=$(p99_of "${SIDE[0]}"); gp99=$(p99_of "${SIDE[1]}")
  POST_P99[$tag]=$pp99; GET_P99[$tag]=$gp99
  local hits misses ratio_hit opened
  read -r hits misses ratio_hit opened < <(j '.server.cache // {} | [.hits, .misses, .hit_ratio, .breaker_opened] | map(if . == null then "-" else tostring end) | join(" ")')
  local audit_ok acked
  read -r audit_ok acked < <(j '.audit // {} | [.ok, .acknowledged_payments] | map(if . == null then "-" else tostring end) | join(" ")')
  local schedule="-" kept=""
  if [[ $(j '.open_model != null') == true ]]; then
    local sched sent late dropped lag
    read -r sched sent late dropped lag < <(j '.open_model | [.scheduled, .sent, .late, .dropped, .send_lag_p99_ms] | join(" ")')
    if (( sent == sched && dropped == 0 && late * 100 <= sched )); then kept="kept"; else
      kept="**not kept**"
      FLAGS+=("$tag: arrival schedule not kept: $sent of $sched sent, $late more than $(j .open_model.late_after_ms) ms late, $dropped dropped, send lag p99 $(fmt "$lag" 2) ms")
    fi
    schedule="$kept: $(th "$sent") / $(th "$sched") sent, $(th "$late") late, $dropped dropped, lag p99 $(fmt "$lag" 2)"
  else
    FLAGS+=("$tag: no open_model figures in the summary")
  fi

  # Flags: anything that makes the run not what it claims to be.
  loadtest_flags "$tag" "" "$rc" "$out.err" "$errors" "$audit_ok"
  local eflag=$EFLAG
  [[ $hits == - ]] && FLAGS+=("$tag: no server.cache figures: the API ran without Redis?")
  case $label in
    up)
      [[ $opened == false ]] || FLAGS+=("up: the breaker opened (breaker_opened $opened) with Redis up the whole run") ;;
    down)
      [[ $opened == true ]] || FLAGS+=("down: breaker_opened is $opened with Redis killed before the run")
      [[ $hits == 0 ]] || FLAGS+=("down: $hits cache hits with Redis killed before the run") ;;
    midway)
      [[ $opened == true ]] || FLAGS+=("$tag: breaker_opened is $opened though Redis was killed midway")
      [[ $hits != - && $hits -gt 0 ]] || FLAGS+=("$tag: no cache hits ($hits)")
      [[ $keys_after != - && $keys_after -gt 0 ]] ||
        FLAGS+=("$tag: Redis held $keys_after keys at the end: the API did not use it again after the restart") ;;
  esac
  [[ $label == midway ]] && redis_state="$redis_state; $(th "$keys_after") keys at the end"

  local ratio_pct; ratio_pct=$(awk -v r="$ratio_hit" 'BEGIN{ if (r == "-") print "-"; else printf "%.1f%%", r*100 }')
  log "$tag: $count requests, p50 $p50 p99 $p99 max $max ms, errors $errors; POST p99 $pp99, GET {id} p99 $gp99; cache $hits/$misses ($ratio_pct) breaker $opened; audit $audit_ok; schedule $kept; other processes $other cores ($other_top)"
  ROWS+=("| $label | $round | $redis_state | $(th "$count") | $p50 | **$p99** | $max | $errors$eflag | $pp99 | $gp99 | $(th "$hits") / $(th "$misses") ($ratio_pct) | $opened | $audit_ok ($(th "$acked") payments) | $schedule | $q | $load_before | $other ($other_top) |")
  local name c a b p m e
  DETAIL+=("| $label | $round | **All** | $(th "$count") | $p50 | $(j .total.p95_ms) | **$p99** | $max | $errors |")
  while IFS=$'\t' read -r name c a b p m e; do
    DETAIL+=("| $label | $round | $name | $(th "$c") | $a | $b | $p | $m | $e |")
  done < <(j '.requests[] | [.name, .count, .p50_ms, .p95_ms, .p99_ms, .max_ms, .errors] | @tsv')
  unset -f j p99_of
}

for ((round = 1; round <= ROUNDS; round++)); do
  for label in "${RUNS[@]}"; do run "$label" "$round"; done
done

# ---------------------------------------------------------------- report
if [[ -n $PAYTOOL_BIN ]]; then CMD_PREFIX="PAYTOOL_BIN=$PAYTOOL_BIN "
  [[ -n $PAYTOOL_REV ]] && CMD_PREFIX+="PAYTOOL_REV=$PAYTOOL_REV "
elif [[ -n $BUILD_REF ]]; then CMD_PREFIX="BUILD_REF=$BUILD_REF "
else CMD_PREFIX="BUILD_REF= "; fi
[[ -z $PAYTOOL_BIN && $SKIP_BUILD == 1 ]] && CMD_PREFIX+="SKIP_BUILD=1 "
goal() { awk -v r="$1" 'BEGIN{ if (r == "-") print "-"; else if (r <= 3) print "met"; else print "**not met**" }'; }
{
  echo "## API p99 with Redis up, down and killed midway (issue 10), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $NPROC cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); the load generator and the API (one process), PostgreSQL and Redis on the same cores"
  echo "- paytool: $BUILT_FROM; PostgreSQL $PGV (a throwaway server per run, spawned by \`paytool loadtest\`: \`postgres = \"spawn\"\`) as the one shard of \`$LAYOUT\`; Redis $REDISV (\`--save '' --appendonly no\`, 127.0.0.1, a fresh empty one per run)"
  echo "- command: \`${CMD_PREFIX}RATE=$RATE RUN_TIME=$RUN_TIME OUTAGE=$OUTAGE ROUNDS=$ROUNDS WAIT_QUIET=$WAIT_QUIET bench/cache_outage.sh\`"
  echo "- each run: \`PAYTOOL_REDIS_URL=redis://127.0.0.1:<port>/ paytool loadtest -p $PROFILE --rate $RATE --run-time $RUN_TIME --output json --report-dir <dir>\` (profile \`$PROFILE\`, blob $(git hash-object "$ROOT/$PROFILE" | cut -c1-10)): open model, $RATE arrivals of checkout 5 : browse 4 : retry_storm 1, 64 connections, 16 merchants (uniform), 1 API instance, \`redis = \"existing\"\`, request timeout 10s, then the money audit. Latency counts from each arrival's scheduled time."
  echo "- up: Redis up the whole run. down: Redis killed (SIGKILL) before the run. midway: Redis killed (SIGKILL) ${THIRD_S} s after the load first reached it, started again (empty, same port) $OUTAGE_S s later"
  echo
  echo "### Ratios (goal ≤ 3)"
  echo
  echo "| round | p99 all requests: down ÷ up | midway ÷ up | POST /v1/payments p99: down ÷ up | midway ÷ up | GET /v1/payments/{id} p99: down ÷ up | midway ÷ up |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for ((round = 1; round <= ROUNDS; round++)); do
    u=up-$round; d=down-$round; m=midway-$round
    rd=$(ratio "${P99[$d]}" "${P99[$u]}"); rm=$(ratio "${P99[$m]}" "${P99[$u]}")
    echo "| $round | **$rd** ($(goal "$rd")) | **$rm** ($(goal "$rm")) | $(ratio "${POST_P99[$d]}" "${POST_P99[$u]}") | $(ratio "${POST_P99[$m]}" "${POST_P99[$u]}") | $(ratio "${GET_P99[$d]}" "${GET_P99[$u]}") | $(ratio "${GET_P99[$m]}" "${GET_P99[$u]}") |"
  done
  echo
  echo "\"down\" is the p99 during an outage (Redis down the whole run, the breaker open). \"midway\"'s p99 covers the whole run: before, during and after the outage, so it dilutes the outage's share (about $OUTAGE_S s of $RUN_S s)."
  echo
  echo "### Per run"
  echo
  echo "Latencies in ms. Cache figures are the summary's server.cache (paytool_cache_requests_total over the run, every kind; breaker opened: any scrape saw paytool_cache_breaker_open above 0). Schedule: arrivals sent of those scheduled, sent more than 10 ms late, dropped (never sent), and the send lag's p99 in ms; \"kept\" when all were sent, none dropped and at most 1% late. Other processes' cores: CPU time (\`ps\`, whole seconds, sampled every 2 s) of every process but this run's (paytool, its PostgreSQL, Redis) over the whole \`paytool loadtest\`, and the command that used most; 0.3 or more is flagged."
  echo
  echo "| run | round | Redis | requests | p50 | p99 | max | errors | POST /v1/payments p99 | GET /v1/payments/{id} p99 | cache hits / misses (hit ratio) | breaker opened | audit ok | schedule | busy cores before | load avg before | other processes' cores during (most) |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "### Per request"
  echo
  echo "| run | round | request | count | p50 | p95 | p99 | max | errors |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${DETAIL[@]}"
  if (( ${#TIMELINE[@]} )); then echo; echo "### Outage timeline"; echo; printf -- '- %s\n' "${TIMELINE[@]}"; fi
  if (( ${#FLAGS[@]} )); then echo; echo "### Flagged"; echo; printf -- '- %s\n' "${FLAGS[@]}"; fi
  echo
  quiet_summary run
  if (( ${#OTHER_NOTES[@]} )); then
    echo "**Other work during runs:** $(IFS=';'; echo "${OTHER_NOTES[*]}")."
  else
    echo "No run had 0.3 cores or more of other processes' work during it."
  fi
} | tee "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
