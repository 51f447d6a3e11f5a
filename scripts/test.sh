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

# Real services, never mocks: PostgreSQL and moto are installed where missing (each
# test starts its own on free loopback ports).
bash scripts/install-services.sh

# The slow-client test holds 3,000 connections open (6,000 descriptors with the server's
# side): raise the soft limit as far as the hard one allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
# The suite builds with the test-only faults (Cargo.toml [features]); every cargo call
# below passes the same features, so they share one build. Clippy also checks the build
# users get, without them.
FEATURES=(--features test-faults)
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --all-targets --locked "${FEATURES[@]}" -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets "${FEATURES[@]}"
# One suite, two backends: the API suite again, on a 2-shard PostgreSQL layout (each
# test starts its own throwaway PostgreSQL server).
echo "== cargo test: the API suite on PostgreSQL"
PAYTOOL_TEST_BACKEND=postgres cargo test --locked --test it "${FEATURES[@]}" -- \
  api:: errors:: idempotency:: crash:: --skip serve_errors::
# The API against its OpenAPI document: schemathesis, every operation and check, a fixed
# seed. The script installs the pinned schemathesis where missing and fails, never
# skips, when it cannot.
echo "== schemathesis"
bash scripts/fuzz_api.sh
# The Dockerfile and the Kubernetes manifests, offline: schemas and lint (no cluster here).
echo "== deployment files"
bash scripts/validate_deploy.sh
