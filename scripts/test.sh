#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the tools the tests use, checks formatting and
# lints, runs every test (unit, integration against the real binary, promtool/amtool checks,
# end-to-end with real Prometheus and Alertmanager), the bounded fuzz run, and a smoke run of
# the benchmark harness.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

echo "== tests (the fuzz test runs for FUZZ_SECONDS)"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" cargo test --all-targets --locked

echo "== benchmark harness (smoke run: proves it works, measures nothing)"
bench/run.sh --smoke
