#!/usr/bin/env bash
# Issue 12's figures, measured and written to RELIABILITY.md by this run:
#   1. the chaos profiles, ROUNDS times each, release build, on a quiet machine:
#      profiles/chaos.toml (2 API instances as processes on 2 spawned PostgreSQL shards
#      with Redis: an instance SIGKILLed, one SIGSTOPped, a shard stopped for 10 s, Redis
#      killed) and profiles/chaos-sqlite.toml (the embedded API SIGKILLed three times);
#      per fault: how often injected, acknowledged payments lost and doubled (the money
#      audit of the run it was in: a run's findings count against each of its faults),
#      the error rate and p99 from injection to recovery, and the time to recover
#      (from the fault's end, restart included, to the last failure before an error-free
#      second);
#   2. the noisy-merchant figure (bench/noisy_merchant.sh, its p99 ratio), unless
#      NOISY=0;
#   3. schemathesis against /openapi.json (scripts/fuzz_api.sh): cases and failures,
#      unless FUZZ=0.
#
# Usage: bench/reliability.sh        Knobs: ROUNDS [3], NOISY [1], FUZZ [1],
#   PAYTOOL_BIN / BUILD_REF / SKIP_BUILD / WAIT_QUIET / BENCH_TMP / KEEP as in lib.sh.
# Quick try (checks the script, measures nothing):
#   PAYTOOL_BIN=target/debug/paytool ROUNDS=1 NOISY=0 FUZZ=0 WAIT_QUIET=0 bench/reliability.sh
# Output: RELIABILITY.md (replaced) and bench/results/reliability-<date>.md. Everything
# listens on 127.0.0.1; every process is bounded by `timeout`.
set -euo pipefail
export LC_NUMERIC=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
NOISY=${NOISY:-1}
FUZZ=${FUZZ:-1}
PAYTOOL_BIN=${PAYTOOL_BIN:-}
BUILD_REF=${BUILD_REF-HEAD}
SKIP_BUILD=${SKIP_BUILD:-0}
BENCH_TMP=${BENCH_TMP:-/tmp}
KEEP=${KEEP:-0}
WAIT_QUIET=${WAIT_QUIET:-600}
PROFILES=(profiles/chaos.toml profiles/chaos-sqlite.toml)
RUN_MAX=600   # bound on one chaos load test (servers' start, the load, the audit)
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: a whole number, 1 or more"

WORK=$(mktemp -d "$BENCH_TMP/paytool-reliability.XXXXXX")
cleanup() { local rc=$?; set +e; drop_work; exit $rc; }
trap_cleanup

load_tools
paytool_binary
STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p bench/results
RESULTS=bench/results/reliability-$STAMP.md
QUIET=()

# ---------------------------------------------------------------- chaos runs
for round in $(seq 1 "$ROUNDS"); do
  for p in "${PROFILES[@]}"; do
    name=$(basename "$p" .toml)
    QUIET+=("$(wait_quiet)")
    log "round $round: $name"
    rc=0
    env -u PAYTOOL_REDIS_URL -u PAYTOOL_ADMIN_TOKEN -u PAYTOOL_LOG \
      timeout "$RUN_MAX" "$BIN" loadtest -p "$p" --output json --report-dir "$WORK/reports" \
      >"$WORK/$name-$round.json" 2>"$WORK/$name-$round.err" || rc=$?
    jq -e '.chaos' "$WORK/$name-$round.json" >/dev/null 2>&1 ||
      { tail -20 "$WORK/$name-$round.err" >&2; die "$name round $round (exit $rc) printed no summary"; }
    log "  exit $rc, passed $(jq -r .passed "$WORK/$name-$round.json")"
  done
done

# ---------------------------------------------------------------- noisy merchant
NOISY_LINE="not measured in this run (NOISY=0)"
if [[ $NOISY == 1 ]]; then
  log "noisy merchant (bench/noisy_merchant.sh)"
  PAYTOOL_BIN=$BIN WAIT_QUIET=$WAIT_QUIET BENCH_TMP=$BENCH_TMP bash bench/noisy_merchant.sh >"$WORK/noisy.md" 2>"$WORK/noisy.err" ||
    { tail -20 "$WORK/noisy.err" >&2; die "bench/noisy_merchant.sh failed"; }
  # Its "mean of the rounds' p99" row: the quiet merchants' p99, noisy ÷ alone.
  NOISY_LINE=$(grep -m1 "^| mean of the rounds' p99" "$WORK/noisy.md" |
    awk -F'|' '{gsub(/^ +| +$/, "", $3); gsub(/^ +| +$/, "", $4); print "all requests " $3 "; POST /v1/payments " $4}')
  [[ -n $NOISY_LINE ]] || die "no ratio row in bench/noisy_merchant.sh's results"
  NOISY_LINE="$NOISY_LINE (from $(ls -t bench/results/noisy-merchant-*.md | head -1))"
fi

# ---------------------------------------------------------------- schemathesis
FUZZ_LINE="not run in this run (FUZZ=0)"
if [[ $FUZZ == 1 ]]; then
  [[ -f scripts/fuzz_api.sh ]] || die "scripts/fuzz_api.sh is missing"
  log "schemathesis (scripts/fuzz_api.sh)"
  rc=0
  PAYTOOL_BIN=$BIN bash scripts/fuzz_api.sh >"$WORK/fuzz.out" 2>&1 || rc=$?
  FUZZ_LINE=$(grep -m1 '^schemathesis: ' "$WORK/fuzz.out" || true)
  [[ -n $FUZZ_LINE ]] || { tail -20 "$WORK/fuzz.out" >&2; die "scripts/fuzz_api.sh printed no summary (exit $rc)"; }
  (( rc == 0 )) && FUZZ_LINE="$FUZZ_LINE: 0 failures, every check on" ||
    FUZZ_LINE="$FUZZ_LINE: **failures**, see scripts/fuzz_api.sh's output"
fi

# ---------------------------------------------------------------- the table
python3 - "$WORK" "$ROUNDS" >"$WORK/table.md" <<'PY'
import json, sys, glob, re, statistics
work, rounds = sys.argv[1], int(sys.argv[2])
faults = {}
runs = []
for path in sorted(glob.glob(f"{work}/*.json")):
    if path.endswith(("noisy.json",)):
        continue
    try:
        s = json.load(open(path))
    except Exception:
        continue
    if "chaos" not in s:
        continue
    checks = {c["name"]: c for c in (s.get("audit") or {}).get("checks", [])}
    lost = checks.get("acknowledged_payments_exist", {}).get("violation_count", 0) + \
        checks.get("acknowledged_amounts_and_states", {}).get("violation_count", 0)
    doubled = checks.get("one_payment_per_idempotency_key", {}).get("violation_count", 0)
    for v in checks.get("store_holds_exactly_the_acknowledged_payments", {}).get("violations", []):
        m = re.search(r"holds (\d+) payments .* acknowledged (\d+)", v)
        if m and int(m.group(1)) > int(m.group(2)):
            doubled += int(m.group(1)) - int(m.group(2))
    runs.append((s["profile"], s["passed"], s["audit"]["acknowledged_payments"], lost, doubled))
    for f in s["chaos"]:
        key = (s["profile"], f["fault"], f["subject"])
        d = faults.setdefault(key, {"n": 0, "lost": 0, "doubled": 0, "req": 0, "failed": 0,
                                    "p99": [], "max": [], "rec": [], "unrecovered": 0, "errors": []})
        d["n"] += 1
        d["lost"] += lost
        d["doubled"] += doubled
        d["req"] += f["requests"]
        d["failed"] += f["failed"]
        d["p99"].append(f["p99_ms"])
        d["max"].append(f.get("max_ms", 0))
        if f.get("error"):
            d["errors"].append(f["error"])
        if f["recovered_after_s"] is None:
            d["unrecovered"] += 1
        else:
            d["rec"].append(f["recovered_after_s"])
print("| profile | fault | on | injected | acknowledged payments lost | doubled | error rate during | p99 during (ms, median / max) | slowest request during (ms) | time to recover (s, median / max) |")
print("|---|---|---|--:|--:|--:|--:|--:|--:|--:|")
for (profile, fault, subject), d in faults.items():
    rate = d["failed"] / d["req"] if d["req"] else 0
    rec = "-" if not d["rec"] else f'{statistics.median(d["rec"]):.1f} / {max(d["rec"]):.1f}'
    if d["unrecovered"]:
        rec += f' ({d["unrecovered"]} not within the run)'
    if d["errors"]:
        rec += " — injection failed: " + "; ".join(d["errors"])
    print(f'| {profile} | {fault} | {subject} | {d["n"]} | {d["lost"]} | {d["doubled"]} | {rate:.1%} | '
          f'{statistics.median(d["p99"]):.0f} / {max(d["p99"]):.0f} | {max(d["max"]):.0f} | {rec} |')
print()
print("| run | passed | acknowledged payments audited | lost | doubled |")
print("|---|---|--:|--:|--:|")
for i, (profile, passed, acked, lost, doubled) in enumerate(runs):
    print(f"| {profile} #{i + 1} | {'yes' if passed else '**no**'} | {acked} | {lost} | {doubled} |")
PY

{
  cat <<MD
# Reliability

Written by \`bench/reliability.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): $BUILT_FROM;
$ROUNDS round(s) of each chaos profile; machine idle before each run: ${QUIET[*]} core(s)
busy ("-": not checked). Everything (the API instances, PostgreSQL, Redis, the load)
shares this machine's $(nproc) cores.

## Faults under load

Each row is one fault of a profile, over every time it was injected. *Lost* and
*doubled* come from the money audit of the run the fault was in (every acknowledged
payment looked up; one payment per idempotency key; the store's count of the run's
payments, through the API, against the client's acknowledgements after the client
resent every create it had no answer for with its key): a run's findings count against
each of its faults. *Error rate* and *p99* are over the requests from injection to
recovery. *Time to recover* runs from the fault's end (a restart's own time included)
to the last failed request before an error-free second.

$(cat "$WORK/table.md")

## One noisy merchant

At 10x its rate limit, the other merchants' p99 (bench/noisy_merchant.sh; goal ≤ 1.20x):
$NOISY_LINE

## Schemathesis

scripts/fuzz_api.sh against \`/openapi.json\`: $FUZZ_LINE

Reproduce: \`bench/reliability.sh\` (ROUNDS, NOISY, FUZZ as above).
MD
} >"$RESULTS"
cp "$RESULTS" RELIABILITY.md
cat RELIABILITY.md
