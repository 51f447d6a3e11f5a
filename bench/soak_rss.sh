#!/usr/bin/env bash
# Memory over a soak: profiles/soak.toml (32 Goose users, every journey, 200 merchants,
# 1 min ramp, 30 min steady, 30 s down) against a release `paytool serve --shards 2` on
# 127.0.0.1, as fast as the API answers (the closed model: the machine's top rate at 32
# users in flight). The generator and the API are separate processes; each one's resident
# set (VmRSS) is sampled every SAMPLE s and its peak (VmHWM) read at the end, so the
# generator's figure is its own (acknowledgement log, histograms, Goose's metrics).
#
# Knobs: RUN_TIME [the profile's 30m plan] e.g. "2m" for a short try (32 users, 10 s
#        ramp); SAMPLE [10] s; SKIP_BUILD [0]; PAYTOOL_BIN [target/release/paytool, built
#        first unless SKIP_BUILD=1]: another binary, not built (as in bench/lib.sh).
# Output: a markdown block on stdout (with the RSS curve every ~3 min), also in
#         bench/results/soak-rss-<date>.md; the samples in bench/results/soak-rss-<date>.csv.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN_TIME=${RUN_TIME:-}
SAMPLE=${SAMPLE:-10}
SKIP_BUILD=${SKIP_BUILD:-0}
BIN=${PAYTOOL_BIN:-$ROOT/target/release/paytool}
[ "$SKIP_BUILD" = 1 ] || [ -n "${PAYTOOL_BIN:-}" ] || cargo build --release --quiet

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" serve --listen 127.0.0.1:0 --shards 2 --data-dir "$WORK/data" > "$WORK/serve.out" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^paytool serve: listening on //p' "$WORK/serve.out")
[ -n "$URL" ] || { cat "$WORK/serve.out"; exit 1; }
PAYTOOL_ADMIN_TOKEN=$(cat "$WORK/data/admin_token")
export PAYTOOL_ADMIN_TOKEN

shape=()
[ -z "$RUN_TIME" ] || shape=(--users 32 --ramp 10s --run-time "$RUN_TIME")
"$BIN" loadtest -p profiles/soak.toml --target "$URL" "${shape[@]}" \
  --report-dir "$WORK/reports" --output json > "$WORK/soak.json" 2> "$WORK/soak.err" &
GEN_PID=$!

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status" 2>/dev/null || true; }
stamp=$(date -u +%Y%m%d-%H%M%S)
csv="bench/results/soak-rss-$stamp.csv"
mkdir -p bench/results
echo "elapsed_s,generator_rss_mib,generator_hwm_mib,api_rss_mib" > "$csv"
start=$(date +%s)
gen_hwm=0
while kill -0 "$GEN_PID" 2>/dev/null; do
  g=$(kib "$GEN_PID" VmRSS); h=$(kib "$GEN_PID" VmHWM); a=$(kib "$SERVER_PID" VmRSS)
  if [ -n "$g" ] && [ -n "$h" ]; then
    gen_hwm=$h
    echo "$(( $(date +%s) - start )),$((g / 1024)),$((h / 1024)),$(( ${a:-0} / 1024 ))" >> "$csv"
  fi
  sleep "$SAMPLE"
done
wait "$GEN_PID" || true
api_hwm=$(kib "$SERVER_PID" VmHWM)

summary=$(python3 - "$WORK/soak.json" "$csv" <<'PY'
import csv, json, sys
d = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
acked = d["audit"]["acknowledged_payments"] if d.get("audit") else 0
print(f"- load: {d['duration_s']:.0f} s, {d['total']['count']} requests at {d['total']['ok_rps']:.0f} successful req/s, "
      f"p99 {d['total']['p99_ms']:.1f} ms; {acked} payments acknowledged and audited "
      f"({'clean' if d.get('audit', {}).get('ok') else 'FAILED'}, {d.get('audit_s') or 0:.1f} s); "
      f"verdict {'PASSED' if d['passed'] else 'FAILED'}")
step = max(1, len(rows) // 10)
curve = ", ".join(f"{int(r['elapsed_s']) // 60}m{int(r['elapsed_s']) % 60:02d}s {r['generator_rss_mib']}" for r in rows[::step])
print(f"- generator RSS (MiB) over the run: {curve}")
PY
)
out="## Soak memory, $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)
- paytool ${PAYTOOL_BIN:-$(git rev-parse --short HEAD) release}; command: \`${RUN_TIME:+RUN_TIME=$RUN_TIME }bench/soak_rss.sh\`; API and generator on the same cores
$summary
- **generator peak RSS: $((gen_hwm / 1024)) MiB**; API peak RSS: $(( ${api_hwm:-0} / 1024 )) MiB (samples: $csv)
"
echo "$out"
echo "$out" > "bench/results/soak-rss-$stamp.md"
