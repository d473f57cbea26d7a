#!/usr/bin/env bash
# Runs every check and test against real PostgreSQL, Redis and Envoy, which it
# installs if missing and starts as throwaway instances. A test that needs a
# service it cannot reach fails here; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
trap stop_services EXIT

started=$SECONDS
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  log "rustup component add rustfmt clippy"
  rustup component add rustfmt clippy
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

ensure_tools_venv
start_postgres
start_redis

export DM_REQUIRE_SERVICES=1
export DM_TEST_POSTGRES_URL="$POSTGRES_URL"
export DM_TEST_REDIS_URL="$REDIS_URL"
export DM_TEST_ENVOY="$ENVOY_BIN"
export DM_TEST_PYTHON="$TOOLS_PYTHON"

log "cargo test"
test_log=$(mktemp)
cargo test --workspace --locked -- --test-threads 4 2>&1 | tee "$test_log"
passed=$(grep -Eo '^test result: [a-z]+\. [0-9]+ passed' "$test_log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed;' "$test_log" | awk '{s += $1} END {print s + 0}')
rm -f "$test_log"

# Benchmarks must keep compiling; the dev profile reuses the test build.
log "benches build"
cargo build --workspace --benches --locked

log "all checks passed in $((SECONDS - started))s"
echo "tests: $passed passed, $failed failed"
