#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit, property and
# integration tests (each integration test starts its own real servers on free
# loopback ports). Installs nothing the suite does not need.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

# The scale tests drive a real moto server (the AWS emulator) and read it back with
# boto3; moto[server] brings both.
if ! python3 -c "import moto.server, boto3" 2>/dev/null; then
  echo "== installing moto[server] (AWS emulator for the scale tests)"
  python3 -m pip install --quiet 'moto[server]' || {
    echo "cannot install moto[server]: the scale tests need it" >&2
    exit 1
  }
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets
