#!/usr/bin/env bash
# Benchmark issue 10's seed figure: `paytool cache seed` keys/s ÷ `redis-cli --pipe`
# inserting the same keys and values, side by side in one invocation on one machine.
#   pipe: `redis-cli --pipe < FILE`, FILE written once by `paytool cache seed
#         --protocol-out FILE` (the exact SETs the seed sends, in RESP: payments
#         `SET k v PX ttl NX`, API keys `SET k v PX ttl`)
#   seed: `paytool cache seed --redis redis://127.0.0.1:<port>/ --data-dir DIR --output json`
# One unmeasured run of each first (redis-server's memory touched, files in the page
# cache), then ROUNDS rounds, the order alternating (odd rounds pipe first, even seed first);
# before each run Redis is emptied (FLUSHALL, CONFIG RESETSTAT) and the machine left to
# go quiet. keys/s = keys ÷ wall seconds (date around the whole process, start included)
# for both; paytool's own keys_per_s (from its JSON, process start excluded) beside it.
# Checked after each run: DBSIZE == keys (API-key entries live 4.5-5 s: if a run took
# longer they may be gone, which is said), SET calls == keys (INFO commandstats), no
# failed or rejected calls, redis-cli's `errors: 0, replies: <keys>`. Reported per run:
# wall s, keys/s, CPU seconds of the client (redis-cli or paytool) and of redis-server,
# other processes' cores (a run they disturbed is run again: RETRIES), Redis memory; per round the ratio seed ÷ pipe; then the medians
# and the median of the per-round ratios (goal >= 0.8). Once after the rounds, for where
# the seed's time goes: `cache seed --dry-run` timed (the same store read and encoding,
# nothing sent).
# Data: a fresh `paytool serve --data-dir DIR --listen 127.0.0.1:0` (embedded SQLite, one
# shard), MERCHANTS merchants, PAYMENTS payments created by wrk with bench/payments.lua
# (capture: true, round-robin over the merchants): MAKE_CONNS wrk threads with one
# connection each, each thread stopping after its share of answers, so the store holds
# exactly PAYMENTS (counted with `cache seed --dry-run`; a short run tops up); then the
# API is stopped, so only the seed (or redis-cli) and redis-server run while measuring.
# redis-server: `--save '' --appendonly no`, 127.0.0.1, a free port, one for all runs.
#
# Usage: bench/cache_seed.sh
#
# Knobs (env vars), defaults in brackets:
#   PAYMENTS [200000]    payments created, then seeded
#   MERCHANTS [8]        merchants they belong to (round-robin)
#   ROUNDS [3]           rounds of (pipe, seed), order alternating
#   SINCE [7d]           `cache seed --since` (every payment just created)
#   MAKE_CONNS [16]      wrk threads (one connection each) creating the payments
#   PAYTOOL_BIN []       use this paytool binary as it is (no build; e.g.
#                        target/debug/paytool for a try-out: figures then say debug); a
#                        REV file beside it (git revision) is quoted in the results
#   BUILD_REF [HEAD]     git ref built from a clean `git archive` into target/bench-ref;
#                        BUILD_REF= (empty) builds the working tree instead
#   SKIP_BUILD [0]       1 uses the binary already built
#   BENCH_TMP [/tmp]     where the data dir, the RESP file and the logs go
#   KEEP [0]             1 keeps them after the run
#   WAIT_QUIET [600]     before each measured run, wait up to this many seconds for the
#                        machine to be idle (other processes < 0.3 cores); then measure
#                        anyway and say so in the results; 0 disables
#   RETRIES [3]          a measured run during which other processes used >= 0.3 cores
#                        is shown but not counted, and run again (after waiting for a
#                        quiet machine), up to this many times; then counted, flagged
#   GATE_FILE []         wait (polling every 10 s, up to GATE_WAIT [5400] s) until this
#                        file exists before creating data and before measuring (a
#                        shared machine's "go" signal); empty: no gate
# The binary is copied into the run's directory first, so a build finishing meanwhile
# cannot swap it mid-run. redis-server (and wrk, curl, jq) are installed if missing.
# Quick try (under a minute with a debug binary; checks the script, measures nothing):
#   PAYTOOL_BIN=target/debug/paytool PAYMENTS=2000 ROUNDS=2 WAIT_QUIET=0 bench/cache_seed.sh
#
# Output: a markdown results block on stdout, also written to
# bench/results/cache-seed-<date>.md. Everything listens on 127.0.0.1 only; every
# process is bounded by `timeout`; a trap stops the API server and redis-server this
# script started.
set -euo pipefail
export LC_NUMERIC=C     # a decimal point in awk's output

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

PAYMENTS=${PAYMENTS:-200000}
MERCHANTS=${MERCHANTS:-8}
ROUNDS=${ROUNDS:-3}
SINCE=${SINCE:-7d}
MAKE_CONNS=${MAKE_CONNS:-16}
PAYTOOL_BIN=${PAYTOOL_BIN:-}
BUILD_REF=${BUILD_REF-HEAD}
SKIP_BUILD=${SKIP_BUILD:-0}
BENCH_TMP=${BENCH_TMP:-/tmp}
KEEP=${KEEP:-0}
WAIT_QUIET=${WAIT_QUIET:-600}
GATE_FILE=${GATE_FILE:-}
GATE_WAIT=${GATE_WAIT:-5400}
RETRIES=${RETRIES:-3}
GOAL=0.8                    # seed keys/s ÷ pipe keys/s
SERVE_MAX=3600              # bound on the API server's life, seconds
REDIS_MAX=3600              # bound on redis-server's life, seconds (start_redis)
MAKE_MAX=1800               # bound on one wrk run creating payments, seconds
RUN_MAX=600                 # bound on one measured run (and on writing the RESP file)
(( ROUNDS >= 1 && PAYMENTS >= 1 && MAKE_CONNS >= 1 )) || die "ROUNDS, PAYMENTS and MAKE_CONNS must be >= 1"

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d "$BENCH_TMP/paytool-cacheseed.XXXXXX")
SERVER_PID=""          # `timeout` running the API server (it passes signals on)
REDIS_PID=""           # `timeout` running redis-server
WRK_PID=""             # `timeout` running wrk
cleanup() {
  local rc=$?
  set +e
  end_process "$WRK_PID" 5
  end_process "$SERVER_PID"
  end_process "$REDIS_PID" 10
  drop_work
  exit $rc
}
trap_cleanup

# The shared machine's go signal, when GATE_FILE names one.
wait_gate() {
  [[ -n $GATE_FILE ]] || return 0
  local waited=0
  until [[ -e $GATE_FILE ]]; do
    (( waited == 0 )) && log "waiting for $GATE_FILE (up to ${GATE_WAIT}s)"
    (( waited >= GATE_WAIT )) && die "$GATE_FILE did not appear in ${GATE_WAIT}s"
    sleep 10; waited=$((waited + 10))
  done
  (( waited > 0 )) && log "$GATE_FILE appeared after ${waited}s"
  return 0
}

# ---------------------------------------------------------------- tools, build
load_tools
find_redis
paytool_binary
if [[ -n $PAYTOOL_BIN && -f $(dirname "$PAYTOOL_BIN")/REV ]]; then
  BUILT_FROM="$BUILT_FROM, revision $(head -c 40 "$(dirname "$PAYTOOL_BIN")/REV" | tr -d '\n')"
fi
SEED_HELP=$("$BIN" cache seed --help 2>&1) || true
grep -q -- '--protocol-out' <<<"$SEED_HELP" || die "$BIN has no \`cache seed --protocol-out\`"
REDISCLIV=$(redis-cli --version | awk '{print $2}')

STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$ROOT/bench/results"
RESULTS=$ROOT/bench/results/cache-seed-$STAMP.md
ROWS=(); FLAGS=(); QUIET_NOTES=(); RATIO_ROWS=()
Q=""
# The median of the numbers given (the mean of the middle two for an even count).
median() {
  printf '%s\n' "$@" | sort -g |
    awk '{a[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b - a}'; }

# ---------------------------------------------------------------- redis-server
# start_redis, redis_cli: lib.sh.
# A field of INFO (e.g. `info_field memory used_memory`).
info_field() { redis_cli INFO "$1" | tr -d '\r' | sed -n "s/^$2:\(.*\)/\1/p"; }
# A counter of one command's INFO commandstats line (0 when the command was not called).
cmdstat() {   # COMMAND FIELD
  redis_cli INFO commandstats | tr -d '\r' | awk -F'[:,=]' -v c="cmdstat_$1" -v f="$2" '
    $1 == c {for (i = 2; i < NF; i += 2) if ($i == f) v = $(i + 1)} END {print v + 0}'
}

# ---------------------------------------------------------------- API server
ADMIN_TOKEN=adm_bench_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
ADDR=""
DATA=$WORK/data
start_server() {
  PAYTOOL_ADMIN_TOKEN=$ADMIN_TOKEN timeout "$SERVE_MAX" "$BIN" serve --listen 127.0.0.1:0 \
    --data-dir "$DATA" >"$WORK/serve.out" 2>"$WORK/serve.err" &
  SERVER_PID=$!
  await_listening "$SERVER_PID" "$WORK/serve.out" "$WORK/serve.err"
  log "paytool serve --data-dir $DATA on $ADDR"
}
# Payments in the store that the seed would write (a read-only pass, no Redis).
stored_payments() {
  timeout "$RUN_MAX" "$BIN" cache seed --dry-run --data-dir "$DATA" --since "$SINCE" --output json \
    >"$WORK/dry-run.json" 2>"$WORK/dry-run.err" || { cat "$WORK/dry-run.err" >&2; die "cache seed --dry-run failed"; }
  jq -r .payments "$WORK/dry-run.json"
}

# ---------------------------------------------------------------- merchants, payments
wait_gate
start_server
KEYS_CSV=$(make_merchants 1 "$ADMIN_TOKEN")

# bench/payments.lua, each thread (one connection) stopping after its share of answers:
# BENCH_QUOTA payments over BENCH_THREADS threads. A stopped thread leaves a file in
# BENCH_DONE; once all have, wrk is interrupted (its main thread sleeps out -d otherwise).
cat >"$WORK/make.lua" <<'LUA'
dofile(os.getenv("BENCH_PAYMENTS_LUA"))
local base_init, base_response = init, response
local share, answered = 0, 0
function init(args)
  base_init(args)
  local total, n = tonumber(os.getenv("BENCH_QUOTA")), tonumber(os.getenv("BENCH_THREADS"))
  share = math.floor(total / n) + ((tid <= total % n) and 1 or 0)
end
function response(status, headers, body)
  base_response(status, headers, body)
  answered = answered + 1
  if answered == share then
    local f = assert(io.open(os.getenv("BENCH_DONE") .. "/" .. tid, "w"))
    f:write(answered, "\n")
    f:close()
    wrk.thread:stop()
  end
end
LUA
MAKE_RUNS=0
make_payments() {   # N: create N payments (wrk, one connection per thread)
  local n=$1 t=$MAKE_CONNS donedir
  (( n < t )) && t=$n
  MAKE_RUNS=$((MAKE_RUNS + 1))
  donedir=$WORK/make-done-$MAKE_RUNS
  mkdir -p "$donedir"
  log "creating $n payments: wrk -t$t -c$t -s payments.lua, each thread stopping after its share"
  BENCH_KEYS=$KEYS_CSV BENCH_RUN="s$STAMP-$MAKE_RUNS" BENCH_QUOTA=$n BENCH_THREADS=$t BENCH_DONE=$donedir \
    BENCH_PAYMENTS_LUA=$ROOT/bench/payments.lua \
    timeout $((MAKE_MAX + 60)) wrk -t"$t" -c"$t" -d"${MAKE_MAX}s" --timeout 10s \
    -s "$WORK/make.lua" "http://$ADDR" >"$WORK/make-$MAKE_RUNS.txt" 2>"$WORK/make-$MAKE_RUNS.err" &
  WRK_PID=$!
  while kill -0 "$WRK_PID" 2>/dev/null; do
    if (( $(find "$donedir" -type f | wc -l) >= t )); then
      kill -INT "$WRK_PID" 2>/dev/null || true   # `timeout` passes it on to wrk
      break
    fi
    sleep 0.2
  done
  wait "$WRK_PID" || log "wrk (creating payments) exited with status $?"
  WRK_PID=""
  local line
  line=$(grep '^BENCH ' "$WORK/make-$MAKE_RUNS.txt") ||
    { cat "$WORK/make-$MAKE_RUNS.txt" "$WORK/make-$MAKE_RUNS.err" >&2; die "wrk printed no BENCH line"; }
  local non200; non200=$(sed -n 's/.* non200=\([0-9]*\).*/\1/p' <<<"$line")
  (( non200 == 0 )) || { head -c 600 "$WORK/make-$MAKE_RUNS.err" >&2; FLAGS+=("creating payments: $non200 non-200 answers (wrk run $MAKE_RUNS)"); }
}
MAKE_T0=$(now)
STORED=0
for _ in 1 2 3 4 5; do
  make_payments $((PAYMENTS - STORED))
  STORED=$(stored_payments)
  log "the store holds $STORED payments"
  (( STORED >= PAYMENTS )) && break
done
MAKE_SECONDS=$(secs_between "$MAKE_T0" "$(now)")
(( STORED >= PAYMENTS )) || die "created $STORED of $PAYMENTS payments"
(( STORED == PAYMENTS )) || FLAGS+=("the store holds $STORED payments, $PAYMENTS were asked for (seeded: all of them)")
log "$STORED payments in ${MAKE_SECONDS}s ($MAKE_RUNS wrk run(s))"
stop_server

# ---------------------------------------------------------------- the RESP file
start_redis
wait_gate
FILE=$WORK/seed.resp
log "paytool cache seed --protocol-out $FILE --since $SINCE"
T0=$(now)
timeout "$RUN_MAX" "$BIN" cache seed --protocol-out "$FILE" --data-dir "$DATA" --since "$SINCE" --output json \
  >"$WORK/protocol-out.json" 2>"$WORK/protocol-out.err" || { cat "$WORK/protocol-out.err" >&2; die "cache seed --protocol-out failed"; }
FILE_SECONDS=$(secs_between "$T0" "$(now)")
KEYS_N=$(jq -r .keys "$WORK/protocol-out.json")
PAY_N=$(jq -r .payments "$WORK/protocol-out.json")
MER_N=$(jq -r .merchants "$WORK/protocol-out.json")
BYTES_N=$(jq -r .bytes "$WORK/protocol-out.json")
FILE_BYTES=$(stat -c %s "$FILE")
APIKEY_N=$((KEYS_N - PAY_N))
(( PAY_N == STORED )) || FLAGS+=("the RESP file holds $PAY_N payments, the store $STORED")
log "RESP file: $(th "$KEYS_N") keys ($MER_N merchants, $APIKEY_N API keys, $(th "$PAY_N") payments), $(th "$FILE_BYTES") bytes, in ${FILE_SECONDS}s"

# ---------------------------------------------------------------- the runs
declare -A KPS             # KPS[round,who]: keys/s by wall clock
SEED_OWN=(); PIPE_ALL=(); SEED_ALL=(); RATIOS=()
CHECKS_OK=1
COUNTED=1
redis_empty() {
  redis_cli FLUSHALL >/dev/null
  redis_cli CONFIG RESETSTAT >/dev/null
  [[ $(redis_cli DBSIZE) == 0 ]] || die "Redis not empty after FLUSHALL"
}
# One measured run; every attempt gets a row. COUNTED=0 (the caller runs it again) when
# other processes used >= 0.3 cores during it and ATTEMPT <= RETRIES. (Not a return
# status: a function called as a condition would run without `set -e`.)
measure() {   # ROUND WHO (pipe | seed) ATTEMPT
  local round=$1 who=$2 attempt=$3 out=$WORK/run-$1-$2-$3 t0 t1 wall
  redis_empty
  quiet_check "round $round $who"; local q=$Q
  local load_before; load_before=$(loadavg)
  local busy0 total0 busy1 total1 rd0 rd1
  log "round $round: $who (load $load_before, busy $q cores)"
  read -r busy0 total0 < <(cpu_jiffies); rd0=$(proc_jiffies "$REDIS_CHILD")
  TIMEFORMAT='%U %S'
  t0=$(now)
  if [[ $who == pipe ]]; then
    { time timeout "$RUN_MAX" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --pipe <"$FILE" >"$out.out" 2>"$out.err"; } 2>"$out.time" ||
      { cat "$out.out" "$out.err" >&2; die "redis-cli --pipe failed (round $round)"; }
  else
    { time timeout "$RUN_MAX" "$BIN" cache seed --redis "redis://127.0.0.1:$REDIS_PORT/" --data-dir "$DATA" \
        --since "$SINCE" --output json >"$out.out" 2>"$out.err"; } 2>"$out.time" ||
      { cat "$out.out" "$out.err" >&2; die "paytool cache seed failed (round $round)"; }
  fi
  t1=$(now)
  rd1=$(proc_jiffies "$REDIS_CHILD"); read -r busy1 total1 < <(cpu_jiffies)
  wall=$(secs_between "$t0" "$t1")
  local dbsize sets failed rejected mem
  dbsize=$(redis_cli DBSIZE)
  sets=$(cmdstat set calls); failed=$(cmdstat set failed_calls); rejected=$(cmdstat set rejected_calls)
  mem=$(info_field memory used_memory_human)
  local cl_user cl_sys; read -r cl_user cl_sys < <(tail -1 "$out.time")
  local keys own="-" reply_note=""
  if [[ $who == pipe ]]; then
    keys=$KEYS_N
    local errors replies
    errors=$(sed -n 's/^errors: \([0-9]*\), replies: \([0-9]*\).*/\1/p' "$out.out")
    replies=$(sed -n 's/^errors: \([0-9]*\), replies: \([0-9]*\).*/\2/p' "$out.out")
    reply_note="errors $errors, replies $(th "$replies")"
    if [[ $errors != 0 || $replies != "$KEYS_N" ]]; then
      CHECKS_OK=0; FLAGS+=("round $round pipe: redis-cli says errors: $errors, replies: $replies (expected 0, $KEYS_N)")
    fi
  else
    keys=$(jq -r .keys "$out.out")
    own=$(jq -r .keys_per_s "$out.out")
    reply_note="paytool: $(fmt "$(jq -r .elapsed_s "$out.out")" 3) s, $(th "$(jq -r .bytes "$out.out")") bytes"
    if [[ $keys != "$KEYS_N" ]]; then
      CHECKS_OK=0; FLAGS+=("round $round seed: paytool wrote $keys keys, the RESP file holds $KEYS_N")
    fi
  fi
  # DBSIZE: every key, except API-key entries (4.5-5 s TTL) once a run outlasts them.
  local check=ok
  if (( dbsize != KEYS_N )); then
    if (( dbsize >= PAY_N && dbsize < KEYS_N )) && awk -v w="$wall" 'BEGIN{exit !(w >= 4.4)}'; then
      check="ok ($((KEYS_N - dbsize)) API-key entries expired: 5 s TTL, ${wall} s run)"
    else
      check="**FAIL**"; CHECKS_OK=0
      FLAGS+=("round $round $who: DBSIZE $dbsize after the run, $KEYS_N keys expected")
    fi
  fi
  if (( sets != KEYS_N || failed + rejected > 0 )); then
    check="**FAIL**"; CHECKS_OK=0
    FLAGS+=("round $round $who: $sets SET calls ($failed failed, $rejected rejected), $KEYS_N keys expected")
  fi
  local kps; kps=$(awk -v k="$keys" -v w="$wall" 'BEGIN{printf "%.0f", k / w}')
  local cl_cpu rd_cpu rd_c other_c
  cl_cpu=$(awk -v u="$cl_user" -v s="$cl_sys" 'BEGIN{printf "%.2f", u + s}')
  rd_cpu=$(awk -v j=$((rd1 - rd0)) -v hz="$HZ" 'BEGIN{printf "%.2f", j / hz}')
  rd_c=$(awk -v c="$rd_cpu" -v w="$wall" 'BEGIN{printf "%.2f", c / w}')
  other_c=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$NPROC" -v c="$cl_cpu" -v r="$rd_cpu" -v w="$wall" \
    'BEGIN{o = (t > 0 ? b / t * n : 0) - (c + r) / w; if (o < 0) o = 0; printf "%.2f", o}')
  local own_raw=$own
  [[ $own == - ]] || own=$(fmt "$own")
  local label=$who
  COUNTED=1
  (( attempt > 1 )) && label="$who, attempt $attempt"
  if awk -v o="$other_c" 'BEGIN{exit !(o >= 0.3)}'; then
    if (( attempt <= RETRIES )); then
      COUNTED=0; label="$label: disturbed, not counted"
      FLAGS+=("round $round $who: other processes used $other_c cores during the run (started with $q busy): run again")
    else
      label="$label: **disturbed**"
      FLAGS+=("round $round $who: other processes used $other_c cores during the run (started with $q busy), and in the $RETRIES run(s) before: counted anyway")
    fi
  fi
  log "round $round $label: $(th "$keys") keys in ${wall} s: $(th "$kps") keys/s (own $own); DBSIZE $dbsize, SET calls $sets; CPU s client $cl_cpu, redis-server $rd_cpu; other $other_c cores"
  ROWS+=("| $round | $label | $(th "$keys") | $wall | **$(th "$kps")** | $(th "$own") | $(th "$dbsize") / $(th "$sets") ($check) | $reply_note | $cl_cpu | $rd_cpu ($rd_c cores) | $other_c | $mem | $q | $load_before |")
  (( COUNTED )) || return 0
  KPS[$round,$who]=$kps
  if [[ $who == pipe ]]; then PIPE_ALL+=("$kps"); else SEED_ALL+=("$kps"); SEED_OWN+=("$own_raw"); fi
}
wait_gate
# Unmeasured: one of each first, so no measured run pays for redis-server's first touch
# of its memory (FLUSHALL leaves it allocated) or a cold page cache.
for who in pipe seed; do
  redis_empty
  log "warm-up: $who (unmeasured)"
  if [[ $who == pipe ]]; then
    timeout "$RUN_MAX" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --pipe <"$FILE" >"$WORK/warm-pipe.out" 2>&1 ||
      { cat "$WORK/warm-pipe.out" >&2; die "redis-cli --pipe failed (warm-up)"; }
  else
    timeout "$RUN_MAX" "$BIN" cache seed --redis "redis://127.0.0.1:$REDIS_PORT/" --data-dir "$DATA" \
      --since "$SINCE" --output json >"$WORK/warm-seed.out" 2>&1 ||
      { cat "$WORK/warm-seed.out" >&2; die "paytool cache seed failed (warm-up)"; }
  fi
done
for ((round = 1; round <= ROUNDS; round++)); do
  if (( round % 2 )); then ORDER=(pipe seed); else ORDER=(seed pipe); fi
  for who in "${ORDER[@]}"; do
    for ((attempt = 1; ; attempt++)); do
      measure "$round" "$who" "$attempt"
      (( COUNTED )) && break
    done
  done
  r=$(awk -v a="${KPS[$round,seed]}" -v b="${KPS[$round,pipe]}" 'BEGIN{printf "%.4f", a / b}')
  RATIOS+=("$r")
  RATIO_ROWS+=("| $round | ${ORDER[0]}, ${ORDER[1]} | $(th "${KPS[$round,pipe]}") | $(th "${KPS[$round,seed]}") | $(fmt "$r" 2) |")
done
# Where the seed's time goes: the same store read and encoding with nothing sent.
redis_empty
for ((attempt = 1; ; attempt++)); do
  quiet_check "dry run"
  log "paytool cache seed --dry-run (busy $Q cores)"
  read -r busy0 total0 < <(cpu_jiffies)
  T0=$(now)
  { time timeout "$RUN_MAX" "$BIN" cache seed --dry-run --data-dir "$DATA" --since "$SINCE" --output json \
      >"$WORK/dry-run-timed.json" 2>"$WORK/dry-run-timed.err"; } 2>"$WORK/dry-run-timed.time" ||
    { cat "$WORK/dry-run-timed.err" >&2; die "cache seed --dry-run failed"; }
  DRY_WALL=$(secs_between "$T0" "$(now)")
  read -r busy1 total1 < <(cpu_jiffies)
  read -r cl_user cl_sys < <(tail -1 "$WORK/dry-run-timed.time")
  DRY_CPU=$(awk -v u="$cl_user" -v s="$cl_sys" 'BEGIN{printf "%.2f", u + s}')
  DRY_OTHER=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$NPROC" -v c="$DRY_CPU" -v w="$DRY_WALL" \
    'BEGIN{o = (t > 0 ? b / t * n : 0) - c / w; if (o < 0) o = 0; printf "%.2f", o}')
  awk -v o="$DRY_OTHER" 'BEGIN{exit !(o >= 0.3)}' || break
  (( attempt > RETRIES )) && { FLAGS+=("dry run: other processes used $DRY_OTHER cores during it"); break; }
  log "dry run: other processes used $DRY_OTHER cores during it; again"
done
DRY_KPS=$(awk -v k="$(jq -r .keys "$WORK/dry-run-timed.json")" -v w="$DRY_WALL" 'BEGIN{printf "%.0f", k / w}')
DRY_OWN=$(fmt "$(jq -r .keys_per_s "$WORK/dry-run-timed.json")")
log "dry run: ${DRY_WALL} s, $(th "$DRY_KPS") keys/s (own $(th "$DRY_OWN")), CPU $DRY_CPU s"

PIPE_MED=$(fmt "$(median "${PIPE_ALL[@]}")")
SEED_MED=$(fmt "$(median "${SEED_ALL[@]}")")
OWN_MED=$(fmt "$(median "${SEED_OWN[@]}")")
RATIO_MED=$(fmt "$(median "${RATIOS[@]}")" 2)
GOAL_MET=no
awk -v r="$RATIO_MED" -v g="$GOAL" 'BEGIN{exit !(r >= g)}' && GOAL_MET=yes
(( CHECKS_OK )) || GOAL_MET="no (a check failed)"
log "median: pipe $(th "$PIPE_MED") keys/s, seed $(th "$SEED_MED") keys/s; seed ÷ pipe $RATIO_MED (goal >= $GOAL: $GOAL_MET)"

# ---------------------------------------------------------------- report
if [[ -n $PAYTOOL_BIN ]]; then CMD_PREFIX="PAYTOOL_BIN=$PAYTOOL_BIN "
elif [[ -n $BUILD_REF ]]; then CMD_PREFIX="BUILD_REF=$BUILD_REF "
else CMD_PREFIX="BUILD_REF= "; fi
[[ -z $PAYTOOL_BIN && $SKIP_BUILD == 1 ]] && CMD_PREFIX+="SKIP_BUILD=1 "
[[ -n $GATE_FILE ]] && CMD_PREFIX+="GATE_FILE=$GATE_FILE "
{
  echo "## paytool cache seed vs redis-cli --pipe (issue 10), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $NPROC cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); the client (paytool or redis-cli) and redis-server on the same cores, nothing else of the bench running"
  echo "- paytool: $BUILT_FROM; Redis $REDISV (\`--save '' --appendonly no\`, 127.0.0.1, one server for all runs, FLUSHALL + CONFIG RESETSTAT before each), redis-cli $REDISCLIV; $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "- command: \`${CMD_PREFIX}PAYMENTS=$PAYMENTS MERCHANTS=$MERCHANTS ROUNDS=$ROUNDS SINCE=$SINCE MAKE_CONNS=$MAKE_CONNS WAIT_QUIET=$WAIT_QUIET RETRIES=$RETRIES bench/cache_seed.sh\`"
  echo "- data: $(th "$STORED") payments (capture: true) over $MERCHANTS merchants, created through \`paytool serve --data-dir DIR\` (embedded SQLite, 1 shard) by wrk with bench/payments.lua in ${MAKE_SECONDS}s ($MAKE_RUNS wrk run(s), $MAKE_CONNS connections); the API stopped before measuring"
  echo "- keys: $(th "$KEYS_N") ($MER_N merchants' $APIKEY_N API-key entries, \`SET k v PX ~5000\`; $(th "$PAY_N") payment entries, \`SET k v PX ~600000 NX\`), $(th "$BYTES_N") bytes of keys and values; the RESP file $(th "$FILE_BYTES") bytes, written in ${FILE_SECONDS}s by \`paytool cache seed --protocol-out FILE --data-dir DIR --since $SINCE\`"
  echo "- pipe: \`redis-cli -h 127.0.0.1 -p PORT --pipe < FILE\`; seed: \`paytool cache seed --redis redis://127.0.0.1:PORT/ --data-dir DIR --since $SINCE --output json\` (reads the SQLite store itself, batches of 1,000 SETs, 4 pipelines in flight on one connection). Both timed by wall clock around the whole process (start included); keys/s = keys ÷ wall s; one unmeasured run of each before round 1"
  echo
  echo "### Side by side (median of $ROUNDS rounds)"
  echo
  echo "| | keys/s (wall) | ÷ pipe |"
  echo "| --- | --- | --- |"
  echo "| redis-cli --pipe | **$(th "$PIPE_MED")** | 1.00 |"
  echo "| paytool cache seed | **$(th "$SEED_MED")** | $(ratio "$SEED_MED" "$PIPE_MED") |"
  echo "| paytool cache seed, its own keys_per_s (process start excluded) | $(th "$OWN_MED") | $(ratio "$OWN_MED" "$PIPE_MED") |"
  echo "| paytool cache seed --dry-run (the same store read and encoding, nothing sent; once, after the rounds; ${DRY_WALL} s, CPU $DRY_CPU s) | $(th "$DRY_KPS") (own: $(th "$DRY_OWN")) | $(ratio "$DRY_KPS" "$PIPE_MED") |"
  echo
  echo "seed ÷ pipe, median of the per-round ratios: **$RATIO_MED** (goal >= $GOAL: **$GOAL_MET**)."
  echo
  echo "| round | order | pipe keys/s | seed keys/s | seed ÷ pipe |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${RATIO_ROWS[@]}"
  echo
  echo "### Per run"
  echo
  echo "| round | run | keys | wall s | keys/s (wall) | paytool's own keys/s | DBSIZE / SET calls after (check) | client's report | CPU s client | CPU s redis-server (cores) | other cores | Redis used_memory | busy cores before | load avg before |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
  if (( ${#FLAGS[@]} )); then echo; echo "### Flagged"; echo; printf -- '- %s\n' "${FLAGS[@]}"; fi
  echo
  quiet_summary
  echo "CPU s client: user + system seconds of redis-cli or paytool (with its \`timeout\`); CPU s redis-server: its utime + stime over the run (10 ms ticks), and that ÷ wall s. \"other\" cores: machine-wide busy time minus both, ÷ wall s (>= 0.3: a disturbed run, not counted and run again, up to RETRIES=$RETRIES times). DBSIZE and the SET calls (INFO commandstats) are read right after each run; the seed also sends one MGET (the merchants' key generations), not counted."
} | tee "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
