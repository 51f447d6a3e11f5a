#!/usr/bin/env bash
# The load balancer's cost (issue 13): payments/s through HAProxy in front of 3 API
# instances ÷ payments/s of one instance direct, same machine, same run. Each case is one
# release `paytool loadtest` of the checkout journey (create + capture) with USERS Goose
# users for DURATION, its API instances spawned on 2 throwaway PostgreSQL shards
# (profiles/shards/two.toml), the first without a balancer, the second with
# `balancer = "haproxy"` and 3 instances (services/haproxy.rs's config); between them, 3
# instances without a balancer (the generator spreads its users over them), which
# separates the cost of three instances from the balancer's own. Everything
# (generator, API processes, HAProxy, PostgreSQL) shares the cores.
#
# Knobs: USERS [64]; DURATION [20s]; RUNS [2]; SKIP_BUILD [0].
# Output: a markdown block on stdout, also in bench/results/balancer-<date>.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
USERS=${USERS:-64}
DURATION=${DURATION:-20s}
RUNS=${RUNS:-2}
SKIP_BUILD=${SKIP_BUILD:-0}
BIN="$ROOT/target/release/paytool"
[ "$SKIP_BUILD" = 1 ] || cargo build --release --quiet

WORK=$(mktemp -d)
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT

profile() {   # NAME INSTANCES BALANCER_LINE
  cat > "$WORK/$1.toml" <<TOML
name = "$1"
[target]
layout = "$ROOT/profiles/shards/two.toml"
postgres = "spawn"
instances = $2
$3
[load]
users = $USERS
ramp = "2s"
run_time = "$DURATION"
timeout = "10s"
[merchants]
count = 16
[scenarios]
checkout = 1
[thresholds]
error_rate_max = 0.01
[audit]
enabled = true
TOML
}
profile direct 1 ""
profile three 3 ""
profile balanced 3 'balancer = "haproxy"'

SECONDS_RUN=${DURATION%s}
# CPU counts over the steady middle of each run's load: from CPU_SKIP s after its start
# (past the ramp) to 2 s before its end.
CPU_SKIP=6

rps() {   # PROFILE: payments/s (successful creates), p99, audit, µs CPU a payment by process
  timeout 600 "$BIN" loadtest -p "$WORK/$1.toml" --report-dir "$WORK/reports" --output json \
    > "$WORK/$1.json" 2> "$WORK/$1.err" &
  local pid=$!
  python3 bench/cpu_by_process.py "$pid" postgres paytool haproxy > "$WORK/$1.samples" &
  wait "$pid" || true
  wait
  local start
  start=$(python3 -c "import json; print(json.load(open('$WORK/$1.json'))['started_at_ms'])")
  python3 bench/cpu_by_process.py --mean $((start + CPU_SKIP * 1000)) \
    $((start + (SECONDS_RUN - 2) * 1000)) "$WORK/$1.samples" > "$WORK/$1.cpu"
  python3 - "$WORK/$1.json" "$WORK/$1.cpu" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
row = next(r for r in d["requests"] if r["name"] == "POST /v1/payments")
cores = dict(kv.split("=") for kv in open(sys.argv[2]).read().split())
per = lambda n: round(float(cores[n]) * 1e6 / row["ok_rps"])
print(round(row["ok_rps"]), round(row["ok_p99_ms"], 1), "clean" if d["audit"]["ok"] else "FAILED",
      f"{per('postgres')}/{per('paytool')}/{per('haproxy')}")
PY
}

rows=""
for run in $(seq "$RUNS"); do
  read -r d_rps d_p99 d_audit d_cpu < <(rps direct)
  read -r t_rps t_p99 t_audit t_cpu < <(rps three)
  read -r b_rps b_p99 b_audit b_cpu < <(rps balanced)
  ratio=$(python3 -c "print(round($b_rps / $d_rps, 2))")
  three=$(python3 -c "print(round($t_rps / $d_rps, 2))")
  rows+="| $run | $d_rps (p99 $d_p99 ms, audit $d_audit; CPU $d_cpu) | $t_rps (p99 $t_p99 ms, audit $t_audit; CPU $t_cpu; $three) | $b_rps (p99 $b_p99 ms, audit $b_audit; CPU $b_cpu) | **$ratio** |"$'\n'
done

out="## Through HAProxy with 3 instances ÷ one instance direct, $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r); $(haproxy -v | head -1 | cut -d' ' -f1-3)
- paytool $(git rev-parse --short HEAD) release; command: \`USERS=$USERS DURATION=$DURATION RUNS=$RUNS bench/balancer.sh\`
- checkout journeys (create + capture) from $USERS Goose users for $DURATION on 2 spawned PostgreSQL shards; payments/s = successful creates a second
- CPU = µs of CPU a payment (create + capture) spent by PostgreSQL / paytool (the generator and the API instances) / HAProxy, sampled from /proc each second from ${CPU_SKIP} s into the load to 2 s before its end (bench/cpu_by_process.py)

| run | one instance direct, payments/s | 3 instances direct (the generator spreads), payments/s (÷ one) | HAProxy + 3 instances, payments/s | ratio (goal ≥ 0.8) |
| --- | --- | --- | --- | --- |
$rows"
echo "$out"
mkdir -p bench/results
echo "$out" > "bench/results/balancer-$(date -u +%Y%m%d-%H%M%S).md"
