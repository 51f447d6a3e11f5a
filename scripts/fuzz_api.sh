#!/usr/bin/env bash
# schemathesis against the OpenAPI document of a running `paytool serve`: every operation,
# every check (a server error, an undocumented status, content type or header, an answer
# off its schema, a schema-valid request refused, a schema-invalid one accepted, a missing
# header or credential let through, an undocumented method...), positive and negative
# cases, then stateful sequences along the links it infers. Any failure fails the run.
#
# Usage: scripts/fuzz_api.sh
#   FUZZ_PROFILE  ci (default: FUZZ_CASES=1100, 15 min bound) or nightly (20000, 2 h)
#   FUZZ_CASES    cases to generate in all; the run fails if schemathesis made fewer
#   FUZZ_SEED     the Hypothesis seed [20261128] (schemathesis 4's --seed, once
#                 --hypothesis-seed): the same seed, versions and binary generate the
#                 same cases
#   FUZZ_TIMEOUT  seconds the whole schemathesis run may take before it is killed
#   FUZZ_WORKERS  concurrent schemathesis workers [1: the order is the seed's too]
#   PAYTOOL_BIN   the binary to serve [$CARGO_TARGET_DIR/debug/paytool, target/ by default;
#                 built if absent]
#   FUZZ_VENV     where schemathesis is installed [target/fuzz-venv]
# Only 127.0.0.1 is ever sent to: the server listens there on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "fuzz_api: $*" >&2; exit 1; }

FUZZ_PROFILE=${FUZZ_PROFILE:-ci}
case $FUZZ_PROFILE in
  ci) cases=1100 bound=900 ;;
  nightly) cases=20000 bound=7200 ;;
  *) die "FUZZ_PROFILE=$FUZZ_PROFILE: ci or nightly" ;;
esac
FUZZ_CASES=${FUZZ_CASES:-$cases}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-$bound}
FUZZ_SEED=${FUZZ_SEED:-20261128}
FUZZ_WORKERS=${FUZZ_WORKERS:-1}
FUZZ_VENV=${FUZZ_VENV:-target/fuzz-venv}
BIN=${PAYTOOL_BIN:-${CARGO_TARGET_DIR:-target}/debug/paytool}
for n in FUZZ_CASES FUZZ_TIMEOUT FUZZ_SEED FUZZ_WORKERS; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n=${!n}: a whole number, 1 or more"
done

# ---------------------------------------------------------------- schemathesis
# Installed where missing, never skipped: a fuzzer that cannot be had fails the run.
REQS=scripts/fuzz-requirements.txt
want=$(sed -n 's/^schemathesis==//p' "$REQS")
ST=$FUZZ_VENV/bin/st
have_pins() {
  local frozen pin
  frozen=$("$FUZZ_VENV/bin/pip" freeze 2>/dev/null) || return 1
  while read -r pin; do
    grep -qixF "$pin" <<<"$frozen" || return 1
  done < <(grep -E '^[A-Za-z]' "$REQS")
}
if ! have_pins; then
  command -v python3 >/dev/null || die "python3 is missing: it runs schemathesis"
  [[ -x $FUZZ_VENV/bin/pip ]] || python3 -m venv "$FUZZ_VENV" || die "cannot make a venv in $FUZZ_VENV"
  "$FUZZ_VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS" ||
    die "cannot install $REQS from PyPI"
fi
version=$("$ST" --version) || die "$ST does not run"
[[ $version == *" $want" ]] || die "$ST is $version, not $want"

# ---------------------------------------------------------------- the server
for tool in curl timeout realpath; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
if [[ ! -x $BIN ]]; then
  [[ -z ${PAYTOOL_BIN:-} ]] || die "PAYTOOL_BIN=$BIN is not an executable"
  cargo build --features test-faults
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/paytool-fuzz.XXXXXX")
SERVER=
stop() {
  local rc=$?
  if [[ -n $SERVER ]]; then
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  if [[ $rc != 0 && -s $WORK/serve.err ]]; then
    echo "fuzz_api: the server's stderr:" >&2
    tail -20 "$WORK/serve.err" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT TERM

ADMIN_TOKEN=adm_fuzz_$(python3 -c 'import secrets; print(secrets.token_hex(16))')
# A fresh data dir and only the settings given here: none of the caller's PAYTOOL_*.
env -u PAYTOOL_CONFIG -u PAYTOOL_LAYOUT -u PAYTOOL_REDIS_URL -u PAYTOOL_RATE_LIMIT \
  -u PAYTOOL_RATE_BURST -u PAYTOOL_LISTEN -u PAYTOOL_DATA_DIR -u PAYTOOL_SHARDS \
  PAYTOOL_ADMIN_TOKEN="$ADMIN_TOKEN" \
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER=$!
URL=
for _ in $(seq 1 300); do
  URL=$(sed -n 's|^paytool serve: listening on \(http://127\.0\.0\.1:[0-9]*\)$|\1|p' "$WORK/serve.out")
  [[ -n $URL ]] && curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || die "paytool serve exited before it answered /healthz"
  URL=
  sleep 0.1
done
[[ -n $URL ]] || die "paytool serve did not answer /healthz within 30 s"

json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
MERCHANT_KEY=$(curl -fsS -X POST "$URL/v1/merchants" -H "Authorization: Bearer $ADMIN_TOKEN" \
  -d '{"name":"schemathesis"}' | json_field secret_key) || die "could not create a merchant"

# Cases per operation: FUZZ_CASES over the operations the document lists (every method
# under every path: 11 now), rounded up. Fuzzing generates up to that many per operation;
# the examples, coverage and stateful phases add theirs; the total is checked below.
OPS=$(curl -fsS "$URL/openapi.json" | python3 -c '
import json, sys
methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
print(sum(m in methods for item in json.load(sys.stdin)["paths"].values() for m in item))')
PER_OP=$(((FUZZ_CASES + OPS - 1) / OPS))

# Each security scheme gets its own credential: the merchant key for the merchant routes,
# the admin token for the admin ones, in one run (schemathesis reads the scheme of each
# operation from the document). The values stay in the environment, not in the file.
cat >"$WORK/schemathesis.toml" <<'EOF'
[auth.openapi.api_key]
bearer = "${PAYTOOL_FUZZ_MERCHANT_KEY}"

[auth.openapi.admin_token]
bearer = "${PAYTOOL_FUZZ_ADMIN_TOKEN}"

# 413 is the server's body limit (`serve --body-limit-bytes`, a deployment setting like
# the rate limit behind 429), not the schema's: a large body, valid or not, may get it.
# Both lists are schemathesis' defaults plus 413.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

# A valid payment may still be declined by the card's issuer: 402, as documented (the
# test cards decide it; "the parameters were valid but the request failed").
[[operations]]
include-path = "/v1/payments"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "402", "403", "404", "409", "413", "429", "5xx"]
EOF

# What a JSON Schema cannot say, taught to schemathesis:
# - `card-number`: the Luhn check. Valid numbers are the test cards (some decline: 402)
#   and random Luhn-valid numbers, in one piece or in groups of four.
# - an Idempotency-Key names one request: the same key with another body is refused
#   (400 idempotency_key_reused), as documented. A valid generated key is made unique
#   before each call, so two cases never share one by chance; it stays a valid key.
# - a capture or refund may ask for no more than the payment still holds: a schema-valid
#   amount over it is refused with 400 `amount_too_large`, as documented and as Stripe
#   does. That one answer, and no other 400, is accepted from those two operations.
mkdir "$WORK/hooks"
cat >"$WORK/hooks/paytool_hooks.py" <<'EOF'
import itertools
import re

import schemathesis
from hypothesis import strategies as st

TEST_CARDS = [
    "4242424242424242", "5555555555554444", "378282246310005", "4000000000000002",
    "4000000000009995", "4000000000009987", "4000000000000069", "4000000000000119",
]


def luhn_complete(payload: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return payload + str(-total % 10)


def grouped(number: str) -> str:
    return " ".join(number[i:i + 4] for i in range(0, len(number), 4))


random_number = st.integers(11, 18).flatmap(
    lambda n: st.text("0123456789", min_size=n, max_size=n)).map(luhn_complete)
schemathesis.openapi.format("card-number", st.one_of(
    st.sampled_from(TEST_CARDS), random_number, random_number.map(grouped)))

VALID_KEY = re.compile(r"[!-~]{1,255}")
serial = itertools.count()


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name, key in list(headers.items()):
        if name.lower() == "idempotency-key" and isinstance(key, str) and VALID_KEY.fullmatch(key):
            suffix = f"~{next(serial)}"
            headers[name] = key[:255 - len(suffix)] + suffix


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """False drops the failure: only a capture's or refund's 400 amount_too_large."""
    if type(failure).__name__ != "RejectedPositiveData" or response.status_code != 400:
        return True
    if case.method.upper() != "POST" or not case.path.endswith(("/capture", "/refunds")):
        return True
    try:
        error = response.json()["error"]
    except Exception:
        return True
    return not (error.get("code") == "amount_too_large" and error.get("param") == "amount")
EOF

echo "schemathesis $want: $OPS operations, $PER_OP cases each by fuzzing, seed $FUZZ_SEED, profile $FUZZ_PROFILE"
start=$(date +%s)
rc=0
# Run in the temp dir: schemathesis keeps a crash cache in ./.schemathesis, which would
# replay an earlier run's cases beside the seed's.
ST=$(realpath "$ST")
(cd "$WORK" && PAYTOOL_FUZZ_MERCHANT_KEY=$MERCHANT_KEY PAYTOOL_FUZZ_ADMIN_TOKEN=$ADMIN_TOKEN \
  PYTHONPATH="$WORK/hooks" SCHEMATHESIS_HOOKS=paytool_hooks \
  timeout --kill-after=10 "$FUZZ_TIMEOUT" \
  "$ST" --config-file "$WORK/schemathesis.toml" run "$URL/openapi.json" \
  --checks all --max-examples "$PER_OP" --seed "$FUZZ_SEED" \
  --workers "$FUZZ_WORKERS" --generation-database none --request-timeout 10 \
  --no-color --output-truncate false) 2>&1 | tee "$WORK/st.out" || rc=$?
secs=$(($(date +%s) - start))
[[ $rc != 124 && $rc != 137 ]] || die "schemathesis did not finish within FUZZ_TIMEOUT=${FUZZ_TIMEOUT}s"
generated=$(sed -n 's/^ *\([0-9][0-9]*\) generated.*/\1/p' "$WORK/st.out" | tail -1)
[[ -n $generated ]] || die "schemathesis printed no case count (exit $rc)"
echo "schemathesis: $generated cases generated in ${secs}s (exit $rc)"
[[ $rc == 0 ]] || die "schemathesis found failures (exit $rc): see above"
((generated >= FUZZ_CASES)) || die "only $generated cases generated, fewer than FUZZ_CASES=$FUZZ_CASES"
kill -0 "$SERVER" 2>/dev/null || die "paytool serve died during the run"
