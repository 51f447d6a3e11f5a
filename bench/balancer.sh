#!/usr/bin/env bash
# The load balancer's cost (issue 13): payments/s through HAProxy in front of 3 API
# instances ÷ payments/s of one instance direct, same machine, same run, for the checkout
# journey (create + capture) on 2 throwaway PostgreSQL shards (profiles/shards/two.toml).
# Three cases: one instance direct; 3 instances direct (the generator spreads its
# connections over them), which separates the cost of three instances from the
# balancer's own; 3 instances behind `balancer = "$BALANCER"` (services/haproxy.rs's
# config). Everything (generator, API processes, HAProxy, PostgreSQL) shares the cores.
#
# Every instance runs as its own `paytool serve` process (`[target] processes = true`),
# as a deployment runs them: the one direct instance too, so the two sides differ only by
# the balancer and the instance count.
#
# MODE=pool [default]: for each count in CONNS, paytool's open model driven past what the
#   target can take (RATE arrivals a second) on a fixed pool of that many connections,
#   each sending its next checkout as soon as the last is answered, as wrk does: the
#   cheapest generator paytool has (about 9 µs of CPU a payment, against Goose's ~25),
#   so the least of the two cores goes to the load itself. payments/s = answered
#   creates a second over the run (arrivals that waited past TIMEOUT are dropped
#   unsent, and its latency, from each arrival's schedule, says only that it was
#   overdriven, so it is not shown).
# MODE=closed: for each count in USERS, that many Goose users for DURATION;
#   payments/s = successful creates a second. A closed model's rate is users ÷ latency, and
#   the balancer adds a hop to the latency, so a count that saturates one instance (64)
#   leaves the balanced case short of the CPU it could use.
# In both, the ratio that answers "what does the balancer cost" is of each case's best
#   rate over the sweep (its capacity), the table shows every count, and each process's
#   CPU a payment is sampled from /proc (bench/cpu_by_process.py).
# MODE=capacity: `loadtest --find-max` in the open model (arrivals at a fixed rate,
#   latency from each one's scheduled time): the highest rate of journeys a second that
#   meets p99 <= P99_MS, errors <= 0.1% and the audit, confirmed by a second run at it.
#
# Knobs: MODE; RUNS [2]; SKIP_BUILD [0]; BALANCER [haproxy] or haproxy-tcp (HAProxy
#        balancing connections, mode tcp); DURATION [20s];
#        pool: CONNS ["64 256 512", a list], RATE [40000/s], TIMEOUT [2s];
#        closed: USERS ["64 256 512", a list];
#        capacity: START [4000/s], STEP_TIME [10s], P99_MS [50].
# Output: a markdown block on stdout, also in bench/results/balancer[-capacity]-<date>.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MODE=${MODE:-pool}
RUNS=${RUNS:-2}
SKIP_BUILD=${SKIP_BUILD:-0}
USERS=${USERS:-"64 256 512"}
CONNS=${CONNS:-"64 256 512"}
RATE=${RATE:-40000/s}
TIMEOUT=${TIMEOUT:-2s}
DURATION=${DURATION:-20s}
START=${START:-4000/s}
STEP_TIME=${STEP_TIME:-10s}
P99_MS=${P99_MS:-50}
BALANCER=${BALANCER:-haproxy}
case $BALANCER in haproxy | haproxy-tcp) ;; *) echo "BALANCER is haproxy or haproxy-tcp, not $BALANCER" >&2; exit 2 ;; esac
case $MODE in pool | closed | capacity) ;; *) echo "MODE is pool, closed or capacity, not $MODE" >&2; exit 2 ;; esac
BIN="$ROOT/target/release/paytool"
[ "$SKIP_BUILD" = 1 ] || cargo build --release --quiet

WORK=$(mktemp -d)
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT

load_section() {
  if [ "$MODE" = pool ]; then
    printf '[load]\nrate = "%s"\nrun_time = "%s"\nconnections = %s\nconnections_max = %s\ntimeout = "%s"\n' \
      "$RATE" "$DURATION" "$users" "$users" "$TIMEOUT"
    printf '[report]\nformats = []\n'
  elif [ "$MODE" = closed ]; then
    printf '[load]\nusers = %s\nramp = "2s"\nrun_time = "%s"\ntimeout = "10s"\n' "$users" "$DURATION"
    printf '[thresholds]\nerror_rate_max = 0.01\n'
  else
    printf '[load]\nrate = "%s"\nrun_time = "%s"\nconnections = 64\nconnections_max = 1024\ntimeout = "5s"\n' \
      "$START" "$STEP_TIME"
    printf '[thresholds]\nerror_rate_max = 0.001\np99_ms_max = %s\n[report]\nformats = []\n' "$P99_MS"
  fi
}

profile() {   # NAME INSTANCES BALANCER_LINE
  cat > "$WORK/$1.toml" <<TOML
name = "$1"
[target]
layout = "$ROOT/profiles/shards/two.toml"
postgres = "spawn"
instances = $2
processes = true
$3
[merchants]
count = 16
[scenarios]
checkout = 1
[audit]
enabled = true
$(load_section)
TOML
}
profiles() {
  profile direct 1 ""
  profile three 3 ""
  profile balanced 3 "balancer = \"$BALANCER\""
}

SECONDS_RUN=${DURATION%s}
# CPU counts over the steady middle of each run's load: from CPU_SKIP s after its
# start (past the ramp) to 2 s before its end.
CPU_SKIP=6

sweep() {   # PROFILE: "payments/s (p99 ms, audit; CPU pg/generator/api/haproxy µs a payment)"
  timeout 600 "$BIN" loadtest -p "$WORK/$1.toml" --report-dir "$WORK/reports" --output json \
    > "$WORK/$1.json" 2> "$WORK/$1.err" &
  local pid=$! gen=""
  # The generator is timeout's child, the paytool loadtest process.
  while [ -z "$gen" ] && kill -0 "$pid" 2> /dev/null; do gen=$(pgrep -P "$pid" || true); done
  python3 bench/cpu_by_process.py "${gen:-$pid}" postgres generator paytool haproxy > "$WORK/$1.samples" &
  wait "$pid" || true
  wait
  local start
  start=$(python3 -c "import json; print(json.load(open('$WORK/$1.json'))['started_at_ms'])")
  python3 bench/cpu_by_process.py --mean $((start + CPU_SKIP * 1000)) \
    $((start + (SECONDS_RUN - 2) * 1000)) "$WORK/$1.samples" > "$WORK/$1.cpu"
  python3 - "$WORK/$1.json" "$WORK/$1.cpu" "$MODE" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
row = next(r for r in d["requests"] if r["name"] == "POST /v1/payments")
cores = dict(kv.split("=") for kv in open(sys.argv[2]).read().split())
per = lambda n: round(float(cores[n]) * 1e6 / row["ok_rps"])
audit = "clean" if d["audit"]["ok"] else "FAILED"
p99 = f"p99 {row['ok_p99_ms']:.1f} ms, " if sys.argv[3] == "closed" else ""
print(round(row["ok_rps"]), f"{round(row['ok_rps'])}/s ({p99}audit {audit}; "
      f"CPU {per('postgres')}/{per('generator')}/{per('paytool')}/{per('haproxy')})")
PY
}
pool() { sweep "$@"; }
closed() { sweep "$@"; }

capacity() {   # PROFILE: "best journeys/s (p99 ms; steps, confirmed or not)"
  timeout 1200 "$BIN" loadtest -p "$WORK/$1.toml" --find-max --find-max-factor 1.5 \
    --find-max-bisect 4 --report-dir "$WORK/reports" --output json \
    > "$WORK/$1.json" 2> "$WORK/$1.err" || true
  python3 - "$WORK/$1.json" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError:
    print(0, "no result"); sys.exit()
best = d.get("best_rate_per_s") or 0
step = next((s for s in d["steps"] if s["passed"] and s["rate_per_s"] == best), None)
confirmed = "confirmed" if (d.get("confirmation") or {}).get("passed") else "UNCONFIRMED"
p99 = step["p99_ms"] if step else 0
print(round(best), f"{round(best)}/s (p99 {p99:.1f} ms; {len(d['steps'])} steps, {confirmed})")
PY
}

rows=""
best_d=0; best_b=0
[ "$MODE" = pool ] && USERS=$CONNS
users=${USERS%% *}
[ "$MODE" = capacity ] && USERS=$users   # find-max has no user count
for run in $(seq "$RUNS"); do
  for users in $USERS; do
    profiles
    read -r d_n d_text < <($MODE direct)
    read -r t_n t_text < <($MODE three)
    read -r b_n b_text < <($MODE balanced)
    ratio=$(python3 -c "print(round($b_n / $d_n, 2) if $d_n else 0)")
    three=$(python3 -c "print(round($t_n / $d_n, 2) if $d_n else 0)")
    label=$run
    [ "$MODE" = closed ] && label="$run, $users users"
    [ "$MODE" = pool ] && label="$run, $users connections"
    rows+="| $label | $d_text | $t_text; $three | $b_text | $ratio |"$'\n'
    # Each run's capacity pair: its best of the sweep, per case.
    [ "$d_n" -gt "$best_d" ] && best_d=$d_n
    [ "$b_n" -gt "$best_b" ] && best_b=$b_n
  done
  peak=$(python3 -c "print(round($best_b / $best_d, 2) if $best_d else 0)")
  rows+="| **$run, best of each** | $best_d/s | | $best_b/s | **$peak** |"$'\n'
  best_d=0; best_b=0
done

cpu="- CPU = µs of CPU a payment (create + capture) spent by PostgreSQL / the generator / the API processes / HAProxy, sampled from /proc each second from ${CPU_SKIP} s into the load to 2 s before its end (bench/cpu_by_process.py)"
if [ "$MODE" = pool ]; then
  title="Through HAProxy with 3 instances ÷ one instance direct"
  knobs="BALANCER=$BALANCER CONNS=\"$CONNS\" RATE=$RATE TIMEOUT=$TIMEOUT DURATION=$DURATION RUNS=$RUNS"
  what="- checkout journeys (create + capture) from paytool's open model at $RATE for $DURATION, more than any case can take, on a fixed pool of each count of connections in ($CONNS): each connection sends its next journey once the last is answered; payments/s = answered creates a second; the bold ratio is of each case's best rate over the counts
- every instance a \`paytool serve\` process
$cpu"
elif [ "$MODE" = closed ]; then
  title="Through HAProxy with 3 instances ÷ one instance direct"
  knobs="BALANCER=$BALANCER USERS=\"$USERS\" DURATION=$DURATION RUNS=$RUNS"
  what="- checkout journeys (create + capture) from each count of Goose users in ($USERS) for $DURATION; payments/s = successful creates a second; the bold ratio is of each case's best rate over the counts (its capacity in the closed model)
- every instance a \`paytool serve\` process
$cpu"
else
  title="Capacity through HAProxy with 3 instances ÷ one instance direct"
  knobs="BALANCER=$BALANCER MODE=capacity START=$START STEP_TIME=$STEP_TIME P99_MS=$P99_MS RUNS=$RUNS"
  what="- the highest rate of checkout journeys (create + capture) a second that met p99 ≤ $P99_MS ms, errors ≤ 0.1% and the audit, confirmed by a second run at it (\`--find-max --find-max-factor 1.5 --find-max-bisect 4\`, steps of $STEP_TIME from $START, open model, 64 connections growing to 1,024)"
fi
out="## $title, $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r); $(haproxy -v | head -1 | cut -d' ' -f1-3)
- paytool $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo " with uncommitted changes to src") release; command: \`$knobs bench/balancer.sh\`; 2 spawned PostgreSQL shards
$what

| run | one instance direct | 3 instances direct (÷ one) | HAProxy ($BALANCER) + 3 instances | ratio (goal ≥ 0.8) |
| --- | --- | --- | --- | --- |
$rows"
echo "$out"
mkdir -p bench/results
suffix=""
[ "$MODE" = capacity ] && suffix="-capacity"
echo "$out" > "bench/results/balancer$suffix-$(date -u +%Y%m%d-%H%M%S).md"
