# shellcheck shell=bash disable=SC2034  # sets globals its callers read
# Shared shell functions of the bench/ scripts (serve.sh, pg_serve.sh, pg_profile.sh,
# shard_move.sh, cache_reads.sh, cache_seed.sh, cache_outage.sh). Source it; it defines
# functions and a few constants only, and runs nothing.
#
# Globals the functions read:  ROOT, WORK, BUILD_REF, SKIP_BUILD, WAIT_QUIET, QUIET_NOTES
#                              (quiet_check, quiet_summary); REDISV, REDIS_MAX (start_redis)
# Globals they set:            BIN, BUILT_FROM (build_paytool); FLAGS, EFLAG (loadtest_flags); PGBIN, PGBENCH, PG_CTL,
#                              AS_PG (find_postgres); ADDR (await_listening); REDISV
#                              (find_redis); REDIS_PORT, REDIS_PID, REDIS_CHILD (start_redis;
#                              kill_redis and stop_redis empty the last two)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# "20s" / "2m" / "20" -> seconds
to_seconds() {
  local v=$1
  case $v in
    *ms) echo 1 ;;
    *s) echo "${v%s}" ;;
    *m) echo $(( ${v%m} * 60 )) ;;
    *h) echo $(( ${v%h} * 3600 )) ;;
    *) echo "$v" ;;
  esac
}

# ---------------------------------------------------------------- tools
apt_install() {
  log "installing $*"
  apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$@" >/dev/null; } ||
    die "could not install $*"
}

# PostgreSQL binaries (installed if missing); as root, its processes run as `postgres`.
find_postgres() {
  PGBIN=${PGBIN:-}
  if [[ -z $PGBIN ]]; then
    for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
      [[ -x $d/initdb ]] && { PGBIN=$d; break; }
    done
  fi
  if [[ -z $PGBIN ]]; then
    apt_install postgresql
    for d in /usr/lib/postgresql/*/bin; do [[ -x $d/initdb ]] && PGBIN=$d; done
  fi
  [[ -x $PGBIN/initdb ]] || die "no PostgreSQL binaries found (set PGBIN)"
  PGBENCH=$PGBIN/pgbench
  [[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench) || die "no pgbench"
  PG_CTL=$PGBIN/pg_ctl
  AS_PG=()
  if [[ $EUID -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a postgres user to run PostgreSQL"
    AS_PG=(runuser -u postgres --)
  fi
}

# ---------------------------------------------------------------- throwaway clusters
# Each needs WORK (a dir the postgres user can write under), PG_OPTS (server flags) and
# PG_DATAS (every cluster started, for the caller's trap: stop_clusters).
declare -A PG_PORT PG_SOCK PG_DIR
pg_start() {   # NAME: initdb and start a cluster on a free loopback port
  local name=$1 root=$WORK/pg-$1 port
  mkdir -p "$root/data" "$root/sock"
  [[ $EUID -eq 0 ]] && chown -R postgres: "$root"
  chmod 700 "$root/data"
  port=$(free_port)
  "${AS_PG[@]}" "$PGBIN/initdb" -D "$root/data" -A trust -U postgres >"$root/initdb.log" 2>&1 ||
    { cat "$root/initdb.log" >&2; die "initdb of $name failed"; }
  PG_DATAS+=("$root/data")
  "${AS_PG[@]}" "$PG_CTL" -D "$root/data" -l "$root/server.log" -w -t 60 \
    -o "-p $port -k $root/sock $PG_OPTS" start >/dev/null ||
    { cat "$root/server.log" >&2; die "PostgreSQL $name did not start"; }
  PG_PORT[$name]=$port; PG_SOCK[$name]=$root/sock; PG_DIR[$name]=$root/data
  log "PostgreSQL $name: port $port"
}
# pg_sql NAME DB SQL: one statement over the Unix socket, unaligned, tuples only.
pg_sql() {
  timeout 600 "${AS_PG[@]}" "$PGBIN/psql" -X -v ON_ERROR_STOP=1 -h "${PG_SOCK[$1]}" -p "${PG_PORT[$1]}" \
    -U postgres -d "$2" -Atqc "$3"
}
stop_clusters() {   # for the trap: every cluster pg_start started, at once
  local d
  for d in "${PG_DATAS[@]}"; do
    [[ -f $d/postmaster.pid ]] && "${AS_PG[@]}" "$PG_CTL" -D "$d" -m immediate -w stop >/dev/null 2>&1
  done
}
# pgbench LABEL NAME DB SECONDS ARGS...: run it bounded (PG_CLIENTS clients, -j 2); sets
# PB_TPS PB_LAT PB_FAILED.
run_pgbench() {
  local label=$1 name=$2 db=$3 secs=$4; shift 4
  timeout $((secs + 120)) "${AS_PG[@]}" "$PGBENCH" -p "${PG_PORT[$name]}" -U postgres \
    -c "$PG_CLIENTS" -j 2 -T "$secs" "$@" "$db" >"$WORK/pgbench-$label.log" 2>&1 ||
    { cat "$WORK/pgbench-$label.log" >&2; die "pgbench $label failed"; }
  PB_TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench-$label.log" | head -1)
  PB_LAT=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$WORK/pgbench-$label.log")
  PB_FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/pgbench-$label.log")
}
# Before each measured run: wait for a quiet machine, set Q (busy cores), and remember in
# QUIET_NOTES a run that started on a busy one.
quiet_check() {   # LABEL
  Q=$(wait_quiet)
  if [[ $Q != - ]] && awk -v c="$Q" 'BEGIN{exit !(c >= 0.3)}'; then
    QUIET_NOTES+=("$1 started with $Q cores busy (waited ${WAIT_QUIET}s)")
  fi
}
# The results' closing line on the machine: the runs quiet_check found busy (QUIET_NOTES),
# or that every one started quiet (not checked with WAIT_QUIET=0).
# shellcheck disable=SC2120  # optional arguments
quiet_summary() {   # [WHAT="measured run"]: what every one of them was
  if (( ${#QUIET_NOTES[@]} )); then
    echo "**Not a quiet machine:** $(IFS=';'; echo "${QUIET_NOTES[*]}")."
  else
    echo "Every ${1:-measured run} started on a quiet machine (other processes < 0.3 cores$( ((WAIT_QUIET > 0)) || echo '; WAIT_QUIET=0, not checked'))."
  fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }'; }
# A number with DIGITS decimals [0], "-" for an empty or null one.
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN{ if (v == "" || v == "null") print "-"; else printf "%.*f", d, v }'; }
# Group digits by thousands: 1234567 -> 1,234,567.
th() { sed -E ':a;s/^([0-9]+)([0-9]{3})/\1,\2/;ta' <<<"$1"; }
now() { date +%s.%N; }
# Seconds since a `now`, one decimal.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}'; }

# ---------------------------------------------------------------- build
# BUILD_REF set: a clean `git archive` of that ref built into target/bench-ref (the working
# tree may hold someone's uncommitted edits). Unset: the working tree, target/release.
build_paytool() {
  if [[ -n ${BUILD_REF:-} ]]; then
    local rev
    rev=$(git -C "$ROOT" rev-parse --short "$BUILD_REF^{commit}")
    BUILT_FROM="$rev ($BUILD_REF, clean export)"
    BIN=$ROOT/target/bench-ref/release/paytool
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
      log "cargo build --release of $BUILD_REF ($rev) into target/bench-ref"
      mkdir -p "$WORK/src"
      # -m: files get the time of extraction, so cargo never mistakes an older checkout for fresh.
      git -C "$ROOT" archive "$BUILD_REF" | tar -x -m -C "$WORK/src"
      (cd "$WORK/src" && CARGO_TARGET_DIR=$ROOT/target/bench-ref cargo build --release --locked --quiet)
    fi
  else
    BUILT_FROM="$(git -C "$ROOT" rev-parse --short HEAD) working tree"
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null ||
      BUILT_FROM="$BUILT_FROM (with uncommitted changes to src/ or Cargo.*)"
    BIN=$ROOT/target/release/paytool
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
      log "cargo build --release"
      (cd "$ROOT" && cargo build --release --quiet)
    fi
  fi
  [[ -x $BIN ]] || die "$BIN missing"
}

# ---------------------------------------------------------------- machine
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 40000 ))
    # Nothing answers on it: free (bash's /dev/tcp, no extra tools).
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Busy and total jiffies of the whole machine, from /proc/stat.
cpu_jiffies() {
  awk '/^cpu /{busy=$2+$3+$4+$7+$8+$9; total=busy+$5+$6; print busy, total}' /proc/stat
}
# utime+stime jiffies of a process.
proc_jiffies() { awk '{print $14+$15}' "/proc/$1/stat"; }
# "NAME JIFFIES" for each thread of a process (names have no spaces: tokio-rt-worker,
# shard-0-writer).
thread_jiffies() { cat /proc/"$1"/task/*/stat 2>/dev/null | awk '{gsub(/[()]/, "", $2); print $2, $14+$15}'; }
# The machine's busy and total jiffies (every core; idle and iowait are not busy).
machine_jiffies() { awk '/^cpu / {t=0; for (i=2; i<=NF; i++) t+=$i; print t-$5-$6, t}' /proc/stat; }
# Cores busy per thread name between two thread_jiffies files over SECONDS: "name x.xx, ...".
threads_busy() {
  awk -v s="$3" -v hz="$(getconf CLK_TCK)" 'NR==FNR {a[$1]+=$2; next} {b[$1]+=$2}
    END {for (n in b) printf "%s %.2f\n", n, (b[n]-a[n])/hz/s}' "$1" "$2" |
    sort -k2 -nr | awk '{printf "%s%s %s", (NR>1 ? ", " : ""), $1, $2}'
}
# utime+stime jiffies of several processes (gone ones count 0).
procs_jiffies() {
  local s=0 p j
  for p in "$@"; do
    j=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null) || j=0
    s=$((s + ${j:-0}))
  done
  echo "$s"
}
HZ=$(getconf CLK_TCK)
NPROC=$(nproc)

# Cores busy machine-wide over a 2 s window.
busy_cores() {
  local b0 t0 b1 t1
  read -r b0 t0 < <(cpu_jiffies); sleep 2; read -r b1 t1 < <(cpu_jiffies)
  awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v n="$NPROC" 'BEGIN{printf "%.2f", (t>0 ? b/t*n : 0)}'
}
# Wait (bounded by WAIT_QUIET seconds) until other processes leave the machine nearly idle
# (< 0.3 cores); print the last reading. Logs when it gave up waiting.
wait_quiet() {
  local c=0 waited=0
  (( WAIT_QUIET > 0 )) || { echo "-"; return; }
  while :; do
    c=$(busy_cores); waited=$((waited + 2))
    awk -v c="$c" 'BEGIN{exit !(c < 0.3)}' && break
    (( waited >= WAIT_QUIET )) && { log "machine still busy ($c cores) after ${WAIT_QUIET}s; running anyway"; break; }
  done
  (( waited > 2 )) && log "waited ${waited}s for a quiet machine (now $c cores busy)"
  echo "$c"
}

# ---------------------------------------------------------------- paytool
# Sum of a Prometheus series (all label sets) from a /metrics dump.
metric_sum() { awk -v m="$2" '$1 ~ "^"m"({|$)" {s+=$2} END {printf "%.6f", s+0}' "$1"; }

# The shard a merchant lands on, as src/ids.rs computes it (SHA-256 of the id, first two
# bytes big-endian, mod 1024 buckets, contiguous equal bucket ranges per shard).
shard_of() {
  local id=$1 shards=$2 h
  h=$(printf '%s' "$id" | sha256sum | cut -c1-4)
  echo $(( (16#$h % 1024) * shards / 1024 ))
}

# For a trap: TERM a process if it runs, wait up to SECONDS for it, then KILL it.
end_process() {   # PID [SECONDS=20]
  local pid=$1 tries=$(( ${2:-20} * 5 ))
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid"
  for _ in $(seq 1 "$tries"); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null
}
# For a trap: keep WORK (KEEP=1, said in the log) or remove it.
drop_work() {
  if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
# The scripts' cleanup() on exit, and a plain exit code on INT and TERM (so it runs).
trap_cleanup() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
# wrk and what reads its output and the API's, installed when missing.
load_tools() {
  command -v wrk >/dev/null || apt_install wrk
  command -v curl >/dev/null || apt_install curl
  command -v jq >/dev/null || apt_install jq
}
# BIN: PAYTOOL_BIN as given (BUILT_FROM says so, and says a debug build measures
# nothing), or build_paytool's release build; then copied into WORK, so a build
# finishing meanwhile cannot swap it mid-run, and written to disk before anything is
# measured: the kernel writes a dirty file back about 30 s later, so the copy's 300 MB
# (and a build's output) would go out during the measured runs, on the disk the shard
# syncs to (payments' p99 was 100-470 ms in half the runs before this, BENCHMARKS.md).
paytool_binary() {
  if [[ -n ${PAYTOOL_BIN:-} ]]; then
    [[ -x $PAYTOOL_BIN ]] || die "PAYTOOL_BIN=$PAYTOOL_BIN is not an executable"
    BUILT_FROM="$PAYTOOL_BIN as given (built $(date -u -r "$PAYTOOL_BIN" '+%Y-%m-%d %H:%M UTC'); HEAD $(git rev-parse --short HEAD))"
    case $PAYTOOL_BIN in *debug*) BUILT_FROM="$BUILT_FROM, **debug build: not a measurement**" ;; esac
    BIN=$PAYTOOL_BIN
  else
    build_paytool
    BUILT_FROM="$BUILT_FROM, release build"
  fi
  cp "$BIN" "$WORK/paytool"; BIN=$WORK/paytool
  sync
}

# Wait (up to 30 s) for `paytool serve` (PID: it or its `timeout`; OUT, ERR: its stdout
# and stderr files) to print "paytool serve: listening on http://ADDR"; sets ADDR, which
# must be on 127.0.0.1. Dies with ERR's text if the server exits first.
await_listening() {   # PID OUT ERR
  local pid=$1 out=$2 err=$3
  ADDR=""
  for _ in $(seq 1 150); do
    ADDR=$(sed -n 's|^paytool serve: listening on http://||p' "$out")
    [[ -n $ADDR ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$err" >&2; die "server exited"; }
    sleep 0.2
  done
  [[ -n $ADDR ]] || die "server did not report its address in 30 s"
  case $ADDR in 127.0.0.1:*) ;; *) die "server listens on $ADDR, not 127.0.0.1" ;; esac
}
# Stop the API server $SERVER_PID: SIGTERM, up to 30 s to drain, then SIGKILL.
stop_server() {
  kill -TERM "$SERVER_PID"
  for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    log "server did not stop on SIGTERM in 30 s; killing"
    kill -KILL "$SERVER_PID"
  fi
  wait "$SERVER_PID" 2>/dev/null || log "server exited with status $?"
  SERVER_PID=""
}

# ---------------------------------------------------------------- redis-server
# redis-server and redis-cli (installed if missing); sets REDISV, the server's version.
find_redis() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then apt_install redis-server; fi
  REDISV=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
}
# One throwaway redis-server at a time: 127.0.0.1, `--save '' --appendonly no`, its files
# in WORK/redis, its log appended to WORK/redis.log, its life bounded by REDIS_MAX seconds
# [3600]. Sets REDIS_PORT, REDIS_PID (its `timeout`: for the caller's trap, end_process
# "$REDIS_PID") and REDIS_CHILD (redis-server itself: its CPU, or kill_redis).
redis_cli() { timeout 60 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
# shellcheck disable=SC2120  # optional arguments
start_redis() {   # [PORT]: a free port unless given (a restart on the same port)
  local fixed=${1:-} try
  mkdir -p "$WORK/redis"
  # free_port only knows nothing answers there: a client's ephemeral port may still hold
  # it ("Address already in use"), so another port (or, given one, a moment) and again.
  for try in $(seq 1 25); do
    REDIS_PORT=${fixed:-$(free_port)}
    timeout "${REDIS_MAX:-3600}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
      --save '' --appendonly no --dir "$WORK/redis" --logfile "$WORK/redis.log" --daemonize no \
      >/dev/null 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 100); do
      [[ $(redis_cli ping 2>/dev/null) == PONG ]] && break
      kill -0 "$REDIS_PID" 2>/dev/null || break
      sleep 0.1
    done
    [[ $(redis_cli ping 2>/dev/null) == PONG ]] && break
    end_process "$REDIS_PID" 5; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=""
    grep -q 'Address already in use' < <(tail -3 "$WORK/redis.log" 2>/dev/null) ||
      { tail -20 "$WORK/redis.log" >&2; die "redis-server did not start on port $REDIS_PORT"; }
    log "port $REDIS_PORT is taken (try $try)"
    [[ -n $fixed ]] && sleep 0.2
  done
  [[ -n $REDIS_PID ]] || die "redis-server found no port to listen on"
  REDIS_CHILD=$(ps -o pid= --ppid "$REDIS_PID" | tr -d ' ')
  [[ -n $REDIS_CHILD ]] || die "no redis-server process under $REDIS_PID"
  log "redis-server $REDISV: port $REDIS_PORT"
}
kill_redis() {   # SIGKILL, as a crash would: the API's connections drop
  log "killing redis-server (SIGKILL, pid $REDIS_CHILD, port $REDIS_PORT)"
  kill -KILL "$REDIS_CHILD"
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""; REDIS_CHILD=""
}
stop_redis() {   # SIGTERM (SIGKILL after 10 s); nothing when none runs
  [[ -n $REDIS_PID ]] || return 0
  end_process "$REDIS_PID" 10
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""; REDIS_CHILD=""
}

# ---------------------------------------------------------------- loadtest summaries
# FLAGS lines for one `paytool loadtest --output json` run: failed requests, a money audit
# not ok, a non-zero exit. Reads the summary through the caller's `j` (jq on it); WHAT
# prefixes the nouns ("quiet " or ""). Sets EFLAG (" **ERRORS**" when requests failed).
loadtest_flags() {   # TAG WHAT RC ERRFILE ERRORS AUDIT_OK
  local tag=$1 what=$2 rc=$3 err=$4 errors=$5 audit_ok=$6
  EFLAG=""
  if (( errors > 0 )); then
    EFLAG=" **ERRORS**"
    FLAGS+=("$tag: $errors failed ${what}requests: $(j '[.requests[] | select(.errors > 0) | "\(.name) \(.errors)"] | join(", ")')")
  fi
  [[ $audit_ok == true ]] || FLAGS+=("$tag: ${what}money audit not ok: $(j '[.audit.checks[]? | select(.ok | not) | "\(.name) (\(.violation_count))"] | join(", ")')")
  (( rc == 0 )) || FLAGS+=("$tag: the ${what}paytool loadtest exited $rc (passed $(j .passed)); thresholds failed: $(j '[.thresholds[] | select(.passed | not) | "\(.scope) \(.rule) \(.actual) > \(.limit)"] | join(", ")'); stderr: $(tail -3 "$err" | tr '\n' ' ' | head -c 300)")
}

# ---------------------------------------------------------------- merchants
# `paytool serve` on one SQLite shard in data dir $1 (fresh or not), on a free loopback
# port, with the environment $2 ("K=V K=V", none by default); sets SERVER_PID, ADDR and
# ADMIN_TOKEN (the one serve wrote into the data dir).
serve_one_sqlite_shard() {   # DATA [ENV]
  # shellcheck disable=SC2086  # ENV is a list of K=V words; env execs, so the PID is serve's
  env ${2:-} "$BIN" serve --listen 127.0.0.1:0 --data-dir "$1" --shards 1 >"$WORK/serve.out" 2>"$WORK/serve.err" &
  SERVER_PID=$!
  await_listening "$SERVER_PID" "$WORK/serve.out" "$WORK/serve.err"
  ADMIN_TOKEN=$(cat "$1/admin_token")
}
# BACKEND [sqlite] checked, before anything starts: sqlite or postgres, else exit 2.
check_backend() {
  BACKEND=${BACKEND:-sqlite}
  case $BACKEND in sqlite | postgres) ;; *) echo "BACKEND is sqlite or postgres, not $BACKEND" >&2; exit 2 ;; esac
}
# `paytool serve` on one fresh shard of BACKEND, data dir DATA: serve_one_sqlite_shard
# or serve_one_pg_shard (the caller's trap must then run stop_clusters); sets STORE too.
serve_one_shard() {   # DATA
  if [[ $BACKEND == sqlite ]]; then
    serve_one_sqlite_shard "$1"
    STORE="one SQLite shard, fresh data dir"
  else
    serve_one_pg_shard "$1"
  fi
}
# `paytool serve` on a layout of one shard, on a PostgreSQL server of its own (cluster
# "pg", initdb defaults, fsync and synchronous_commit on; the caller's trap must run
# stop_clusters), data dir DATA; sets SERVER_PID, ADDR, ADMIN_TOKEN and STORE (a line
# for the results). Needs WORK, BIN and PG_OPTS (extra server flags, may be empty).
serve_one_pg_shard() {   # DATA
  find_postgres
  chmod 755 "$WORK"
  pg_start pg
  pg_sql pg postgres "CREATE DATABASE paytool" >/dev/null
  local version; version=$(pg_sql pg postgres "SHOW server_version" | cut -d' ' -f1)
  printf 'name = "bench-one-shard"
version = 1
buckets = 1024
[shards.s0]
url = "postgres://postgres@127.0.0.1:%s/paytool"
[[ranges]]
buckets = "0-1023"
shard = "s0"
' \
    "${PG_PORT[pg]}" >"$WORK/layout.toml"
  timeout 120 "$BIN" shard apply --layout "$WORK/layout.toml" >"$WORK/apply.log" 2>&1 ||
    { cat "$WORK/apply.log" >&2; die "shard apply failed"; }
  ADMIN_TOKEN=adm_bench_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  PAYTOOL_ADMIN_TOKEN=$ADMIN_TOKEN "$BIN" serve --layout "$WORK/layout.toml" --listen 127.0.0.1:0 \
    --data-dir "$1" >"$WORK/serve.out" 2>"$WORK/serve.err" &
  SERVER_PID=$!
  await_listening "$SERVER_PID" "$WORK/serve.out" "$WORK/serve.err"
  STORE="one PostgreSQL $version shard (its own throwaway server, fsync and synchronous_commit on)"
}
# One bounded `wrk -t1 -c64` of bench/payments.lua (created and captured, a unique
# Idempotency-Key each, under run tag RUN) against http://$ADDR as the merchants KEYS,
# its output (the BENCH line) into OUT.
wrk_payments() {   # RUN DURATION OUT
  BENCH_KEYS=$KEYS BENCH_RUN=$1 timeout $(($(to_seconds "$2") + 60)) \
    wrk -t1 -c64 -d"$2" --timeout 10s --latency -s "$ROOT/bench/payments.lua" "http://$ADDR" \
    >"$3" 2>&1
}
# Create merchants on http://$ADDR with admin token $2 until each of $1 shards has its
# share of MERCHANTS; print their keys, comma-separated.
make_merchants() {
  local shards=$1 token=$2 per=$(( (MERCHANTS + $1 - 1) / $1 )) tries=0 kept=0 json id key s
  local -a count keys=()
  for ((s = 0; s < shards; s++)); do count[s]=0; done
  while (( kept < MERCHANTS && tries < MERCHANTS * 20 )); do
    tries=$((tries + 1))
    json=$(curl -sS --max-time 10 -X POST "http://$ADDR/v1/merchants" \
      -H "Authorization: Bearer $token" -d "{\"name\":\"bench-$tries\"}")
    id=$(jq -r .id <<<"$json")
    key=$(jq -r .secret_key <<<"$json")
    [[ $key == sk_* ]] || die "merchant creation failed: $json"
    s=$(shard_of "$id" "$shards")
    if (( count[s] < per )); then
      count[s]=$((count[s] + 1)); kept=$((kept + 1)); keys+=("$key")
    fi
  done
  (( kept == MERCHANTS )) || die "could not balance $MERCHANTS merchants over $shards shards"
  log "merchants per shard: ${count[*]} (created $tries)"
  local IFS=,
  echo "${keys[*]}"
}
