#!/usr/bin/env bash
# Where one PostgreSQL shard's time goes under bench/payments.lua: a fresh cluster (same
# settings as bench/pg_serve.sh, plus pg_stat_statements), one `paytool serve --layout`,
# 8 merchants, a 3 s warm-up, then 15 s of wrk -t2 -c$C with pidstat (per thread) and
# `perf record -a` (10 s) beside it; prints per-statement time and WAL, table scans, and
# the perf profile by process and symbol. Uses the binary bench/pg_serve.sh built
# (target/bench-ref/release/paytool); output on stdout only.
# Knobs: C [128] connections; ANALYZE [1] (0: profile a never-analyzed fresh shard);
#        WAIT_QUIET [120].  Usage: C=128 bench/pg_profile.sh > profile.txt
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); cd "$ROOT"; source bench/lib.sh
WAIT_QUIET=${WAIT_QUIET:-120}
find_postgres; BIN=$ROOT/target/bench-ref/release/paytool
W=$(mktemp -d "${BENCH_TMP:-/tmp}/pgprof.XXXX"); chmod 755 $W; mkdir -p $W/d $W/s; chown -R postgres: $W/d $W/s; chmod 700 $W/d
PORT=$(free_port); SPID=""
cleanup(){ set +e; [[ -n $SPID ]] && kill $SPID; wait $SPID 2>/dev/null; "${AS_PG[@]}" $PG_CTL -D $W/d -m immediate -w stop >/dev/null 2>&1; rm -rf $W; }
trap cleanup EXIT
"${AS_PG[@]}" $PGBIN/initdb -D $W/d -A trust -U postgres >/dev/null
"${AS_PG[@]}" $PG_CTL -D $W/d -l $W/d/../s/log -w -o "-p $PORT -k $W/s -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c shared_preload_libraries=pg_stat_statements -c track_io_timing=on" start >/dev/null
q(){ timeout 120 "${AS_PG[@]}" $PGBIN/psql -X -h $W/s -p $PORT -U postgres -d "$1" -Atc "$2"; }
q postgres "CREATE DATABASE paytool"; q paytool "CREATE EXTENSION pg_stat_statements"
cat > $W/l.toml <<T
name = "prof"
version = 1
buckets = 1024
[shards.s0]
url = "postgres://postgres@127.0.0.1:$PORT/paytool"
[[ranges]]
buckets = "0-1023"
shard = "s0"
T
$BIN shard apply --layout $W/l.toml >/dev/null
TOK=adm_prof_$(od -An -N8 -tx1 /dev/urandom | tr -d " \n")
PAYTOOL_ADMIN_TOKEN=$TOK $BIN serve --layout $W/l.toml --listen 127.0.0.1:0 --data-dir $W/data > $W/out 2>$W/err & SPID=$!
await_listening "$SPID" "$W/out" "$W/err"
KEYS=""; for i in 1 2 3 4 5 6 7 8; do k=$(curl -sS -X POST http://$ADDR/v1/merchants -H "Authorization: Bearer $TOK" -d "{\"name\":\"m$i\"}" | jq -r .secret_key); KEYS="$KEYS${KEYS:+,}$k"; done
BENCH_KEYS=$KEYS BENCH_RUN=w$$ timeout 60 wrk -t2 -c128 -d3s -s bench/payments.lua http://$ADDR >/dev/null
[[ ${ANALYZE:-1} == 1 ]] && q paytool "ANALYZE"
q paytool "SELECT pg_stat_statements_reset()" >/dev/null
WB=$(q paytool "SELECT pid FROM pg_stat_activity WHERE application_name='paytool' ORDER BY xact_start NULLS LAST, backend_start LIMIT 5" | tr '\n' ' ')
echo "paytool backends: $WB"
wait_quiet >/dev/null
BENCH_KEYS=$KEYS BENCH_RUN=p$$ timeout 60 wrk -t2 -c${C:-128} -d15s --latency -s bench/payments.lua http://$ADDR > $W/wrk.txt &
WP=$!
sleep 2
timeout 30 pidstat -u -t -p $SPID,$(echo $WB | tr ' ' ',') 10 1 > $W/pidstat.txt 2>&1 &
perf record -F 999 -g -a -o $W/perf.data -- sleep 10 >/dev/null 2>&1 || true
wait $WP || true
grep -E '^BENCH|Requests/sec' $W/wrk.txt
echo '--- pidstat (Average)'; grep -E '^Average' $W/pidstat.txt | sort -k8 -rn | head -14
echo '--- pg_stat_statements'
q paytool "SELECT calls, round(total_exec_time::numeric,0) AS ms, round(mean_exec_time::numeric,3) AS mean_ms, rows, round(wal_bytes/1e6,1) AS wal_mb, left(regexp_replace(query,'\s+',' ','g'),70) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12"
echo '--- tables'; q paytool "SELECT relname, seq_scan, seq_tup_read, idx_scan, n_live_tup, last_autoanalyze FROM pg_stat_user_tables ORDER BY seq_tup_read DESC"
echo '--- perf by process (comm)'
perf report -i $W/perf.data --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
echo '--- perf postgres symbols'
perf report -i $W/perf.data --no-children --comm postgres --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
echo '--- perf paytool symbols'
perf report -i $W/perf.data --no-children --comm paytool,tokio-runtime-w --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25
