#!/usr/bin/env bash
# Benchmark issue 12's isolation figure: "one noisy merchant at 10x its limit must not
# move the other merchants' p99 by more than 20%". One `paytool serve --rate-limit LIMIT`
# (embedded SQLite store, a fresh data dir per run) takes the same quiet load two ways:
#   A. baseline: only the quiet load: `paytool loadtest -p bench/noisy-quiet.toml` (open
#      model, RATE_QUIET arrivals/s of checkout 6 : browse 4 over 16 merchants, uniform,
#      so each is well under the limit; 32 connections; then the money audit)
#   B. noisy:    the same quiet load while ONE other merchant (bench/noisy-noisy.toml:
#      checkouts, one POST /v1/payments each) sends at NOISY_FACTOR x LIMIT. The noisy
#      load test starts first; once its requests reach the server (the server's
#      paytool_rate_limited_total rises) and NOISY_LEAD more seconds have passed, the
#      quiet one starts. The noisy schedule is RUN_TIME + NOISY_EXTRA long, so it spans
#      the quiet one (checked from both runs' goose.json).
# Both load tests run against the script's server (--target, admin token in the env;
# each creates its own merchants through the admin API). Rounds alternate the order:
# A then B in odd rounds, B then A in even ones. Reported per run, from the quiet load
# test's JSON summary: p50, p99, max and errors of all requests and of POST
# /v1/payments, the audit and how well the arrival schedule was kept; the noisy side's
# requests, 200s and 429s (its failed requests, and paytool_rate_limited_total from the
# server's /metrics before and after) and 200s per second; CPU of the server, of both
# load generators and of other processes. Then p99(B) ÷ p99(A) per round and over the
# rounds' mean; the goal is ≤ 1.20.
#
# Usage: bench/noisy_merchant.sh
#
# Knobs (env vars), defaults in brackets:
#   LIMIT [100/s]        the server's per-merchant limit (serve --rate-limit)
#   BURST []             serve --rate-burst; empty: the server's default (one second's worth)
#   NOISY_FACTOR [10]    the noisy merchant's arrival rate is this x LIMIT
#   RATE_QUIET [400/s]   the quiet load's arrivals per second, the same in A and B; an
#                        arrival is one journey (a checkout 1 request, a browse up to 4)
#   RUN_TIME [20s]       length of the quiet load's arrival schedule (--run-time)
#   NOISY_EXTRA [5]      seconds the noisy schedule runs beyond RUN_TIME
#   NOISY_LEAD [2]       seconds between the noisy load reaching the server and the quiet
#                        load test starting
#   ROUNDS [2]           A/B pairs, the order alternating
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
# cannot swap it mid-run. curl and jq (and wrk, unused) are installed if missing.
# Quick try (about a minute with a debug binary; checks the script, measures nothing):
#   PAYTOOL_BIN=target/debug/paytool RUN_TIME=5s RATE_QUIET=50/s LIMIT=10/s ROUNDS=1 WAIT_QUIET=0 bench/noisy_merchant.sh
#
# Output: a markdown results block on stdout, also written to
# bench/results/noisy-merchant-<date>.md. Everything listens on 127.0.0.1 only; every
# process is bounded by `timeout`; a trap stops the load tests and the server.
set -euo pipefail
export LC_NUMERIC=C     # a decimal point in awk's output

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

LIMIT=${LIMIT:-100/s}
BURST=${BURST:-}
NOISY_FACTOR=${NOISY_FACTOR:-10}
RATE_QUIET=${RATE_QUIET:-400/s}
RUN_TIME=${RUN_TIME:-20s}
NOISY_EXTRA=${NOISY_EXTRA:-5}
NOISY_LEAD=${NOISY_LEAD:-2}
ROUNDS=${ROUNDS:-2}
PAYTOOL_BIN=${PAYTOOL_BIN:-}
PAYTOOL_REV=${PAYTOOL_REV:-}
BUILD_REF=${BUILD_REF-HEAD}
SKIP_BUILD=${SKIP_BUILD:-0}
BENCH_TMP=${BENCH_TMP:-/tmp}
KEEP=${KEEP:-0}
WAIT_QUIET=${WAIT_QUIET:-600}
QUIET_PROFILE=bench/noisy-quiet.toml
NOISY_PROFILE=bench/noisy-noisy.toml
POST="POST /v1/payments"
NOISY_WAIT=60               # at most this many seconds for the noisy load to reach the server

num='^[0-9]+([.][0-9]+)?$'
LIMIT_N=${LIMIT%/s}
QUIET_N=${RATE_QUIET%/s}
[[ $LIMIT_N =~ $num ]] || die "LIMIT=$LIMIT: requests per second such as 100/s"
[[ $QUIET_N =~ $num ]] || die "RATE_QUIET=$RATE_QUIET: arrivals per second such as 400/s"
[[ $NOISY_FACTOR =~ $num ]] || die "NOISY_FACTOR=$NOISY_FACTOR: a number"
[[ -z $BURST || $BURST =~ ^[1-9][0-9]*$ ]] || die "BURST=$BURST: a whole number, 1 or more"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: a whole number, 1 or more"
[[ $NOISY_EXTRA =~ ^[0-9]+$ && $NOISY_LEAD =~ ^[0-9]+$ ]] || die "NOISY_EXTRA and NOISY_LEAD are whole seconds"
RUN_S=$(to_seconds "$RUN_TIME")
[[ $RUN_S =~ ^[1-9][0-9]*$ ]] || die "RUN_TIME is whole seconds, minutes or hours (20s, 2m)"
NOISY_N=$(awk -v l="$LIMIT_N" -v f="$NOISY_FACTOR" 'BEGIN{printf "%g", l * f}')
RATE_NOISY=$NOISY_N/s
NOISY_S=$((RUN_S + NOISY_EXTRA))
NOISY_TIME=${NOISY_S}s
LT_MAX=$((NOISY_S + NOISY_WAIT + 300))   # bound on one `paytool loadtest` (merchants, the audit)
SERVE_MAX=$((2 * LT_MAX + 120))          # bound on a server's life
# The quiet merchants' share: requests per second each, at about 2.2 requests an arrival
# (a checkout is 1, a browse up to 4; 6 : 4). It must stay well under the limit.
QUIET_PER_MERCHANT=$(awk -v r="$QUIET_N" 'BEGIN{printf "%.1f", r * (0.6 + 0.4 * 4) / 16}')
awk -v q="$QUIET_PER_MERCHANT" -v l="$LIMIT_N" 'BEGIN{exit !(q <= 0.8 * l)}' ||
  die "RATE_QUIET=$RATE_QUIET gives each of the 16 quiet merchants about $QUIET_PER_MERCHANT requests/s: not well under LIMIT=$LIMIT"

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d "$BENCH_TMP/paytool-noisy.XXXXXX")
SERVER_PID=""          # `timeout` running the API server (it passes signals on)
QUIET_PID=""           # subshell timing the quiet `paytool loadtest` (under `timeout`)
NOISY_PID=""           # the same for the noisy one
# A load test's subshell: its `timeout` first (it passes TERM on to paytool), then it.
end_load() {   # PID
  local pid=$1 c
  [[ -n $pid ]] || return 0
  for c in $(ps -o pid= --ppid "$pid" 2>/dev/null); do end_process "$c" 30; done
  end_process "$pid" 5
}
cleanup() {
  local rc=$?
  set +e
  end_load "$QUIET_PID"
  end_load "$NOISY_PID"
  end_process "$SERVER_PID" 30
  drop_work
  exit $rc
}
trap_cleanup

# ---------------------------------------------------------------- tools, build
load_tools
paytool_binary
[[ -n $PAYTOOL_REV ]] && BUILT_FROM="$BUILT_FROM; built from $PAYTOOL_REV"
SERVE_HELP=$("$BIN" serve --help 2>&1) || true
grep -q -- '--rate-limit ' <<<"$SERVE_HELP" || die "$BIN has no \`serve --rate-limit\`"
PAYTOOL_VERSION=$("$BIN" --version 2>/dev/null | head -1) || PAYTOOL_VERSION="-"

STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$ROOT/bench/results"
RESULTS=$ROOT/bench/results/noisy-merchant-$STAMP.md
ROWS=(); NOISY_ROWS=(); DETAIL=(); FLAGS=(); QUIET_NOTES=(); WINDOWS=()
Q=""
declare -A P99 POST_P99

# ---------------------------------------------------------------- API server
ADMIN_TOKEN=adm_bench_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
ADDR=""
SERVER_CHILD=""        # paytool itself (SERVER_PID is its `timeout`)
SERVE_ARGS=(--listen 127.0.0.1:0 --shards 1 --rate-limit "$LIMIT")
[[ -n $BURST ]] && SERVE_ARGS+=(--rate-burst "$BURST")
start_server() {   # TAG
  local tag=$1
  env -u PAYTOOL_LAYOUT -u PAYTOOL_CONFIG -u PAYTOOL_REDIS_URL -u PAYTOOL_SHARDS -u PAYTOOL_LISTEN \
    -u PAYTOOL_DATA_DIR -u PAYTOOL_RATE_LIMIT -u PAYTOOL_RATE_BURST -u PAYTOOL_LOG \
    PAYTOOL_ADMIN_TOKEN="$ADMIN_TOKEN" \
    timeout "$SERVE_MAX" "$BIN" serve --data-dir "$WORK/data-$tag" "${SERVE_ARGS[@]}" \
    >"$WORK/serve-$tag.out" 2>"$WORK/serve-$tag.err" &
  SERVER_PID=$!
  await_listening "$SERVER_PID" "$WORK/serve-$tag.out" "$WORK/serve-$tag.err"
  SERVER_CHILD=$(ps -o pid= --ppid "$SERVER_PID" | tr -d ' ')
  [[ -n $SERVER_CHILD ]] || die "no paytool process under $SERVER_PID"
  log "$tag: paytool serve ${SERVE_ARGS[*]} on $ADDR"
}
metrics() { curl -sS --max-time 10 "http://$ADDR/metrics" >"$1" || die "GET /metrics failed"; }
limited() { metrics "$1"; metric_sum "$1" paytool_rate_limited_total | awk '{printf "%.0f", $1}'; }

# ---------------------------------------------------------------- load tests
# One `paytool loadtest` against the server, in the background, timed by bash (its CPU):
# OUT.json (the summary), OUT.err, OUT.time ("wall user sys" seconds), OUT-reports/.
start_load() {   # OUT PROFILE RATE RUN_TIME; sets LOAD_PID
  local out=$1
  (
    TIMEFORMAT='%R %U %S'
    time env -u PAYTOOL_TARGET -u PAYTOOL_PROFILE -u PAYTOOL_REPORT_DIR -u PAYTOOL_LOG \
      PAYTOOL_ADMIN_TOKEN="$ADMIN_TOKEN" \
      timeout "$LT_MAX" "$BIN" loadtest -p "$2" --target "http://$ADDR" --rate "$3" --run-time "$4" \
      --output json --report-dir "$out-reports" >"$out.json" 2>"$out.err"
  ) 2>"$out.time" &
  LOAD_PID=$!
}
# A load test's CPU in cores over its own life, from OUT.time.
load_cores() { awk 'NF == 3 && $1 > 0 {printf "%.2f", ($2 + $3) / $1; f = 1} END {if (!f) print "-"}' "$1.time"; }
# The arrival schedule's start and end (epoch seconds): it starts 1 s after Goose starts
# its one user (START_DELAY in src/loadtest/open_model.rs; goose.json's first history
# entry) and lasts the run time. "- -" when goose.json is missing.
schedule_window() {   # REPORTS_DIR SECONDS
  local goose start
  goose=$(find "$1" -name goose.json 2>/dev/null | head -1)
  [[ -n $goose ]] || { echo "- -"; return; }
  start=$(date -d "$(jq -r '.raw_metrics.history[0].timestamp' "$goose")" +%s.%N 2>/dev/null) || { echo "- -"; return; }
  awk -v s="$start" -v d="$2" 'BEGIN{printf "%.3f %.3f\n", s + 1, s + 1 + d}'
}
summary_ok() {   # TAG OUT RC WHAT
  jq -e '.total' "$2.json" >/dev/null 2>&1 ||
    { tail -30 "$2.err" >&2; die "$1: the $4 paytool loadtest (exit $3) printed no summary"; }
}

# ---------------------------------------------------------------- one run
run() {   # LABEL(A|B) ROUND
  local label=$1 round=$2 tag=$1-$2 q out=$WORK/$1-$2-quiet nout=$WORK/$1-$2-noisy
  local rc=0 nrc=0 lim0 lim_lead lim1 load_before
  start_server "$tag"
  quiet_check "$tag"; q=$Q
  load_before=$(loadavg)
  lim0=$(limited "$out.m0")
  local t_noisy="" lead_note="-"
  if [[ $label == B ]]; then
    log "$tag: noisy load first: paytool loadtest -p $NOISY_PROFILE --rate $RATE_NOISY --run-time $NOISY_TIME"
    start_load "$nout" "$NOISY_PROFILE" "$RATE_NOISY" "$NOISY_TIME"; NOISY_PID=$LOAD_PID
    t_noisy=$(now)
    local waited=0
    lim_lead=$lim0
    while (( lim_lead == lim0 )); do
      kill -0 "$NOISY_PID" 2>/dev/null || { summary_ok "$tag" "$nout" "?" noisy; die "$tag: the noisy load test ended before it reached the server"; }
      (( waited >= NOISY_WAIT * 10 )) && die "$tag: the noisy load did not reach the server (no 429) in ${NOISY_WAIT}s"
      sleep 0.1; waited=$((waited + 1))
      lim_lead=$(limited "$out.mlead")
    done
    lead_note="429s from +$(since "$t_noisy") s"
    log "$tag: the noisy load reached the server ($lead_note); the quiet load in ${NOISY_LEAD}s"
    sleep "$NOISY_LEAD"
  fi
  log "$tag: quiet load: paytool loadtest -p $QUIET_PROFILE --rate $RATE_QUIET --run-time $RUN_TIME (load $load_before, busy $q cores)"
  local busy0 total0 busy1 total1 srv0 srv1 t0 t1
  read -r busy0 total0 < <(cpu_jiffies); srv0=$(proc_jiffies "$SERVER_CHILD"); t0=$(now)
  start_load "$out" "$QUIET_PROFILE" "$RATE_QUIET" "$RUN_TIME"; QUIET_PID=$LOAD_PID
  wait "$QUIET_PID" || rc=$?
  QUIET_PID=""
  read -r busy1 total1 < <(cpu_jiffies); srv1=$(proc_jiffies "$SERVER_CHILD"); t1=$(now)
  local noisy_alive=1
  if [[ $label == B ]]; then
    kill -0 "$NOISY_PID" 2>/dev/null || noisy_alive=0
    wait "$NOISY_PID" || nrc=$?
    NOISY_PID=""
  fi
  lim1=$(limited "$out.m1")
  stop_server
  summary_ok "$tag" "$out" "$rc" quiet
  [[ $label == B ]] && summary_ok "$tag" "$nout" "$nrc" noisy
  log "$tag: done (quiet exit $rc$([[ $label == B ]] && echo ", noisy exit $nrc"))"

  j() { jq -r "$1" "$out.json"; }
  row_of() {   # FILE NAME -> "count p50 p99 max errors" of that request ("- - - - -" if none)
    jq -r --arg n "$2" '[.requests[] | select(.name == $n)][0] // {} |
      [.count, .p50_ms, .p99_ms, .max_ms, .errors] | map(if . == null then "-" else tostring end) | join(" ")' "$1"
  }
  local count p50 p99 max errors pc pp50 pp99 pmax perr
  read -r count p50 p99 max errors < <(j '.total | [.count, .p50_ms, .p99_ms, .max_ms, .errors] | join(" ")')
  read -r pc pp50 pp99 pmax perr < <(row_of "$out.json" "$POST")
  P99[$tag]=$p99; POST_P99[$tag]=$pp99
  local audit_ok acked
  read -r audit_ok acked < <(j '.audit // {} | [.ok, .acknowledged_payments] | map(if . == null then "-" else tostring end) | join(" ")')
  local schedule="-" kept=""
  if [[ $(j '.open_model != null') == true ]]; then
    local sched sent late dropped lag
    read -r sched sent late dropped lag < <(j '.open_model | [.scheduled, .sent, .late, .dropped, .send_lag_p99_ms] | join(" ")')
    if (( sent == sched && dropped == 0 && late * 100 <= sched )); then kept="kept"; else
      kept="**not kept**"
      FLAGS+=("$tag: quiet arrival schedule not kept: $sent of $sched sent, $late more than $(j .open_model.late_after_ms) ms late, $dropped dropped, send lag p99 $lag ms")
    fi
    schedule="$kept: $(th "$sent") / $(th "$sched"), $(th "$late") late, $dropped dropped, lag p99 $lag"
  else
    FLAGS+=("$tag: no open_model figures in the quiet summary")
  fi

  # CPU over the quiet load test's life: the server, machine-wide, both generators.
  local wall srv_c all_c qlt_c nlt_c="-" other_c
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')
  srv_c=$(awk -v j=$((srv1 - srv0)) -v hz="$HZ" -v s="$wall" 'BEGIN{printf "%.2f", j/hz/s}')
  all_c=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$NPROC" 'BEGIN{printf "%.2f", (t > 0 ? b/t*n : 0)}')
  qlt_c=$(load_cores "$out")
  [[ $label == B ]] && nlt_c=$(load_cores "$nout")
  other_c=$(awk -v a="$all_c" -v s="$srv_c" -v q="$qlt_c" -v n="$nlt_c" 'BEGIN{o = a - s - (q == "-" ? 0 : q) - (n == "-" ? 0 : n); if (o < 0) o = 0; printf "%.2f", o}')
  if awk -v c="$other_c" 'BEGIN{exit !(c >= 0.3)}'; then
    FLAGS+=("$tag: other processes used about $other_c cores during the quiet load test: **a busy machine**, its figures are suspect")
  fi

  # Flags: anything that makes the run not what it claims to be.
  loadtest_flags "$tag" "quiet " "$rc" "$out.err" "$errors" "$audit_ok"
  local eflag=$EFLAG
  local per_m; per_m=$(awk -v c="$count" -v s="$RUN_S" 'BEGIN{printf "%.1f", c / s / 16}')
  local d429=$((lim1 - lim0))
  if [[ $label == A ]] && (( d429 > 0 )); then
    FLAGS+=("$tag: the server refused $d429 requests (429) with only the quiet merchants sending (about $per_m requests/s each, LIMIT $LIMIT)")
  fi

  ROWS+=("| $label | $round | $(th "$count") | $p50 | **$p99** | $max | $errors$eflag | $(th "$pc") | $pp50 | **$pp99** | $pmax | $perr | $audit_ok ($(th "$acked") payments) | $schedule |")
  local name c a b p m e
  DETAIL+=("| $label | $round | **All** | $(th "$count") | $p50 | $(j .total.p95_ms) | **$p99** | $max | $errors |")
  while IFS=$'\t' read -r name c a b p m e; do
    DETAIL+=("| $label | $round | $name | $(th "$c") | $a | $b | $p | $m | $e |")
  done < <(j '.requests[] | [.name, .count, .p50_ms, .p95_ms, .p99_ms, .max_ms, .errors] | @tsv')

  # The noisy side (run B).
  local noisy_cell="-"
  if [[ $label == B ]]; then
    local nc np50 np99 nmax nerr nok nsched nsent ndrop
    read -r nc np50 np99 nmax nerr < <(row_of "$nout.json" "$POST")
    read -r nsched nsent ndrop < <(jq -r '.open_model // {} | [.scheduled, .sent, .dropped] | map(if . == null then "-" else tostring end) | join(" ")' "$nout.json")
    local ntotal
    ntotal=$(jq -r '.total.count' "$nout.json")
    nok=$((nc - nerr))
    local req_s ok_s expect_ok
    req_s=$(awk -v n="$nc" -v s="$NOISY_S" 'BEGIN{printf "%.0f", n / s}')
    ok_s=$(awk -v n="$nok" -v s="$NOISY_S" 'BEGIN{printf "%.1f", n / s}')
    # What the limiter lets through over the schedule: LIMIT a second plus one burst.
    expect_ok=$(awk -v l="$LIMIT_N" -v s="$NOISY_S" -v b="${BURST:-$LIMIT_N}" 'BEGIN{printf "%.0f", l * s + b}')
    (( ntotal == nc )) || FLAGS+=("$tag: the noisy load test sent $ntotal requests, $nc of them $POST: a checkout sent more than one request?")
    awk -v o="$nok" -v e="$expect_ok" 'BEGIN{exit !(o >= 0.8 * e && o <= 1.2 * e)}' ||
      FLAGS+=("$tag: the noisy merchant got $nok requests through, expected about $expect_ok (LIMIT $LIMIT over $NOISY_S s plus one burst)")
    (( d429 == nerr )) ||
      FLAGS+=("$tag: the server counted $d429 429s (paytool_rate_limited_total) and the noisy load test $nerr failed requests: some failures were not 429s, or a quiet merchant was refused")
    [[ $ndrop == 0 ]] || FLAGS+=("$tag: the noisy load test dropped $ndrop arrivals (not sent)")
    (( nrc == 0 )) || FLAGS+=("$tag: the noisy paytool loadtest exited $nrc; stderr: $(tail -3 "$nout.err" | tr '\n' ' ' | head -c 300)")
    # Did the noisy schedule span the quiet one?
    local qs qe ns ne
    read -r qs qe < <(schedule_window "$out-reports" "$RUN_S")
    read -r ns ne < <(schedule_window "$nout-reports" "$NOISY_S")
    if [[ $qs != - && $ns != - ]]; then
      local before after
      before=$(awk -v q="$qs" -v n="$ns" 'BEGIN{printf "%.1f", q - n}')
      after=$(awk -v q="$qe" -v n="$ne" 'BEGIN{printf "%.1f", n - q}')
      WINDOWS+=("$tag: the noisy schedule started $before s before the quiet one and ended $after s after it ($lead_note after the noisy load test started)")
      awk -v b="$before" -v a="$after" 'BEGIN{exit !(b > 0 && a > 0)}' ||
        FLAGS+=("$tag: the noisy schedule did not span the quiet one (started $before s before it, ended $after s after it)")
    else
      (( noisy_alive )) || FLAGS+=("$tag: the noisy load test had ended before the quiet one did")
      WINDOWS+=("$tag: no goose.json to place the schedules; the noisy load test was $( ((noisy_alive)) || echo "**not** ")still running when the quiet one ended")
    fi
    noisy_cell="$(th "$nc") sent ($req_s/s; $(th "$nsent") / $(th "$nsched") arrivals) | **$(th "$nok")** ($ok_s/s) | $(th "$nerr") | $(th "$d429") | $np50 / $np99 / $nmax"
    NOISY_ROWS+=("| $round | $noisy_cell |")
    log "$tag: noisy: $nc requests ($req_s/s), $nok 200s ($ok_s/s), $nerr failed, server 429s $d429"
  fi
  log "$tag: quiet $count requests, p50 $p50 p99 $p99 max $max ms, errors $errors; POST p99 $pp99; audit $audit_ok; schedule $kept; CPU server $srv_c, quiet lt $qlt_c, noisy lt $nlt_c, other $other_c"
  CPU_ROWS+=("| $label | $round | $srv_c | $qlt_c | $nlt_c | $all_c | $other_c | $q | $load_before |")
  unset -f j row_of
}

CPU_ROWS=()
for ((round = 1; round <= ROUNDS; round++)); do
  if (( round % 2 )); then order=(A B); else order=(B A); fi
  for label in "${order[@]}"; do run "$label" "$round"; done
done

# ---------------------------------------------------------------- report
if [[ -n $PAYTOOL_BIN ]]; then CMD_PREFIX="PAYTOOL_BIN=$PAYTOOL_BIN "
  [[ -n $PAYTOOL_REV ]] && CMD_PREFIX+="PAYTOOL_REV=$PAYTOOL_REV "
elif [[ -n $BUILD_REF ]]; then CMD_PREFIX="BUILD_REF=$BUILD_REF "
else CMD_PREFIX="BUILD_REF= "; fi
[[ -z $PAYTOOL_BIN && $SKIP_BUILD == 1 ]] && CMD_PREFIX+="SKIP_BUILD=1 "
[[ -n $BURST ]] && CMD_PREFIX+="BURST=$BURST "
goal() { awk -v r="$1" 'BEGIN{ if (r == "-") print "-"; else if (r <= 1.20) print "met"; else print "**not met**" }'; }
mean_of() {   # ARRAY-NAME LABEL: the mean of that label's p99 over the rounds
  local -n arr=$1
  local r vals=()
  for ((r = 1; r <= ROUNDS; r++)); do vals+=("${arr[$2-$r]}"); done
  printf '%s\n' "${vals[@]}" | awk '$1 != "-" {s += $1; n++} END {if (n) printf "%.2f", s/n; else print "-"}'
}
BURST_DESC=${BURST:-"the server's default, one second's worth ($LIMIT_N)"}
{
  echo "## Quiet merchants' p99 beside one noisy merchant at ${NOISY_FACTOR}x its rate limit (issue 12), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $NPROC cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); the API server and both load generators on the same cores"
  echo "- paytool: $BUILT_FROM ($PAYTOOL_VERSION); $(jq --version), $(curl --version | head -1 | awk '{print $1, $2}'), bash $BASH_VERSION"
  echo "- command: \`${CMD_PREFIX}LIMIT=$LIMIT NOISY_FACTOR=$NOISY_FACTOR RATE_QUIET=$RATE_QUIET RUN_TIME=$RUN_TIME NOISY_EXTRA=$NOISY_EXTRA NOISY_LEAD=$NOISY_LEAD ROUNDS=$ROUNDS WAIT_QUIET=$WAIT_QUIET bench/noisy_merchant.sh\`"
  echo "- server, one per run (fresh data dir): \`PAYTOOL_ADMIN_TOKEN=<token> paytool serve --data-dir <dir> ${SERVE_ARGS[*]}\` (embedded SQLite store, one shard; burst $BURST_DESC)"
  echo "- quiet load (A and B): \`PAYTOOL_ADMIN_TOKEN=<token> paytool loadtest -p $QUIET_PROFILE --target http://<addr> --rate $RATE_QUIET --run-time $RUN_TIME --output json --report-dir <dir>\` (blob $(git hash-object "$ROOT/$QUIET_PROFILE" | cut -c1-10)): open model, $RATE_QUIET arrivals of checkout 6 : browse 4, 32 connections, 16 merchants (uniform: about $QUIET_PER_MERCHANT requests/s each on average), request timeout 10s, then the money audit. Latency counts from each arrival's scheduled time."
  echo "- noisy load (B only): \`PAYTOOL_ADMIN_TOKEN=<token> paytool loadtest -p $NOISY_PROFILE --target http://<addr> --rate $RATE_NOISY --run-time $NOISY_TIME --output json --report-dir <dir>\` (blob $(git hash-object "$ROOT/$NOISY_PROFILE" | cut -c1-10)): open model, $RATE_NOISY checkout arrivals (one POST /v1/payments each) of 1 merchant, 32 connections, no audit. Started first; the quiet load test started $NOISY_LEAD s after the server first answered it 429."
  echo "- order: A then B in odd rounds, B then A in even ones"
  echo
  echo "### Ratios (goal ≤ 1.20)"
  echo
  echo "| round | quiet p99, all requests: B ÷ A | quiet POST /v1/payments p99: B ÷ A |"
  echo "| --- | --- | --- |"
  for ((round = 1; round <= ROUNDS; round++)); do
    r=$(ratio "${P99[B-$round]}" "${P99[A-$round]}"); rp=$(ratio "${POST_P99[B-$round]}" "${POST_P99[A-$round]}")
    echo "| $round | **$r** ($(goal "$r")): ${P99[B-$round]} ÷ ${P99[A-$round]} ms | $rp ($(goal "$rp")): ${POST_P99[B-$round]} ÷ ${POST_P99[A-$round]} ms |"
  done
  mA=$(mean_of P99 A); mB=$(mean_of P99 B); pA=$(mean_of POST_P99 A); pB=$(mean_of POST_P99 B)
  rm_all=$(ratio "$mB" "$mA"); rm_post=$(ratio "$pB" "$pA")
  echo "| mean of the rounds' p99 | **$rm_all** ($(goal "$rm_all")): $mB ÷ $mA ms | $rm_post ($(goal "$rm_post")): $pB ÷ $pA ms |"
  echo
  echo "### Quiet merchants per run"
  echo
  echo "Latencies in ms. Schedule: quiet arrivals sent of those scheduled, sent more than 10 ms late, dropped (never sent), and the send lag's p99 in ms; \"kept\" when all were sent, none dropped and at most 1% late."
  echo
  echo "| run | round | requests | p50 | p99 | max | errors | POST /v1/payments | POST p50 | POST p99 | POST max | POST errors | audit ok | schedule |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "### The noisy merchant (run B)"
  echo
  echo "Its requests are all POST /v1/payments (a checkout is one request). 200s and 429s from its summary (a 429 is a failed request there) and from the server's paytool_rate_limited_total (/metrics before and after the run: every merchant's 429s). Per second: over its $NOISY_S s schedule; the limiter lets through about $LIMIT_N requests a second plus one burst."
  echo
  echo "| round | requests | 200s | failed (429s) | server 429s | p50 / p99 / max ms |"
  echo "| --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${NOISY_ROWS[@]}"
  echo
  echo "### CPU"
  echo
  echo "Cores over the quiet load test's life (from its start to its exit, the audit included): the server (paytool serve, /proc utime+stime), every process machine-wide (/proc/stat), other processes (machine-wide minus the server and both load generators; rough). Load generators: each one's user+sys time (bash \`time\`) over its own life."
  echo
  echo "| run | round | server | quiet loadtest | noisy loadtest | machine | other | busy cores before | load avg before |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${CPU_ROWS[@]}"
  echo
  echo "### Per request (quiet load)"
  echo
  echo "| run | round | request | count | p50 | p95 | p99 | max | errors |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${DETAIL[@]}"
  if (( ${#WINDOWS[@]} )); then echo; echo "### Overlap"; echo; printf -- '- %s\n' "${WINDOWS[@]}"; fi
  if (( ${#FLAGS[@]} )); then echo; echo "### Flagged"; echo; printf -- '- %s\n' "${FLAGS[@]}"; fi
  echo
  quiet_summary run
} | tee "$RESULTS"
log "written to ${RESULTS#"$ROOT"/}"
