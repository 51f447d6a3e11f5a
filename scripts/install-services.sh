#!/usr/bin/env bash
# Installs the services the tests and sharded load tests start for themselves, where a
# fresh Debian machine lacks them: PostgreSQL (throwaway servers on free loopback ports),
# Redis (the same), HAProxy and openssl (the https test), Chromium (the HTML report) and moto (the AWS emulator for the scale tests). Starts nothing: each test starts its
# own. Fails loudly when something cannot be installed: nothing is ever skipped.
set -euo pipefail

need_apt=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  need_apt+=(postgresql)
fi
if ! command -v psql >/dev/null; then
  need_apt+=(postgresql-client)
fi
if ! command -v redis-server >/dev/null; then
  need_apt+=(redis-server)
fi
# The HTML report's test opens it as a user would, in headless Chromium.
if ! command -v chromium >/dev/null; then
  need_apt+=(chromium)
fi
# The https test puts a TLS-terminating HAProxy in front of the API, with a certificate
# openssl makes.
if ! command -v haproxy >/dev/null; then
  need_apt+=(haproxy)
fi
if ! command -v openssl >/dev/null; then
  need_apt+=(openssl)
fi
# A test reads the API's listen backlog with ss.
if ! command -v ss >/dev/null; then
  need_apt+=(iproute2)
fi
if ((${#need_apt[@]})); then
  echo "== installing ${need_apt[*]} (Debian packages)"
  if [[ $(id -u) -ne 0 ]]; then
    echo "installing ${need_apt[*]} needs root: run 'sudo apt-get install -y ${need_apt[*]}'" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts Redis on 6379 after install where it can; paytool's tests never use it.
  if command -v service >/dev/null; then
    service redis-server stop >/dev/null 2>&1 || true
    # The same for HAProxy's packaged service (it listens on nothing paytool uses).
    service haproxy stop >/dev/null 2>&1 || true
  fi
  # Debian starts a cluster on 5432 after install; paytool's tests never use it.
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
      pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
    done
  fi
fi
if [[ $(id -u) -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
  echo "running as root but there is no postgres user to run PostgreSQL as" >&2
  exit 1
fi

# The scale tests drive a real moto server and read it back with boto3; moto[server]
# brings both.
if ! python3 -c "import moto.server, boto3" 2>/dev/null; then
  echo "== installing moto[server] (AWS emulator for the scale tests)"
  python3 -m pip install --quiet 'moto[server]' || {
    echo "cannot install moto[server]: the scale tests need it" >&2
    exit 1
  }
fi
