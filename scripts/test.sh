#!/usr/bin/env bash
# Runs every check and test against real PostgreSQL, Redis and Envoy, which it
# installs if missing and starts as throwaway instances. A test that needs a
# service it cannot reach fails here; it never skips.
#
# Every step runs even after an earlier one failed (and every test binary runs
# even after a failing one), so one run shows everything that is wrong. The
# last line is always `tests: N passed, N failed`; a failed step (fmt, clippy,
# the benches build, a test binary that crashed or did not build) counts as a
# failure there. The exit status is non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh
trap stop_services EXIT

started=$SECONDS
failed_steps=()
# A service that cannot be installed or started ends the run as a failure,
# still with the summary line.
die() {
  printf 'error: %s\n' "$*" >&2
  echo "tests: 0 passed, 1 failed"
  exit 1
}
step() { # name command...
  local name=$1
  shift
  log "$name"
  "$@" || failed_steps+=("$name")
}

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  log "rustup component add rustfmt clippy"
  rustup component add rustfmt clippy || die "cannot install rustfmt and clippy"
fi

ensure_build_deps
step "cargo fmt --check" cargo fmt --all -- --check
step "rust-version" bash -c 'cargo metadata --format-version 1 --locked | python3 scripts/check-rust-version.py'
# The layering (docs/design/architecture.md): no two files reach each other.
step "no import loops between files" python3 scripts/import-loops.py issuer/src sidecar/src sidecar-core/src authz-module/src devmentor-cli/src
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
# Benchmarks must keep compiling; the dev profile shares the test build.
step "benches build" cargo build --workspace --benches --locked
# The Envoy module (a cdylib: not built by the test build).
step "authz module build" cargo build -p authz-module --locked
# The devmentor CLI, which the e2e tests run as a process.
step "devmentor CLI build" cargo build -p devmentor-cli --locked

# A missing service is fatal (die), never a skip.
ensure_promtool
step "alerting rules and dashboard (promtool)" ./scripts/check-observability.sh
ensure_tools_venv
step "authz module links against this Envoy" ./scripts/check-module-symbols.sh target/debug/libdevmentor_authz.so
ensure_nginx
ensure_chromium
start_postgres
start_redis

export DM_REQUIRE_SERVICES=1
export DM_TEST_POSTGRES_URL="$POSTGRES_URL"
export DM_TEST_POSTGRES_CA="$POSTGRES_CA"
export DM_TEST_REDIS_URL="$REDIS_URL"
export DM_TEST_REDIS_TLS_URL="$REDIS_TLS_URL"
export DM_TEST_REDIS_CA="$REDIS_CA"
export DM_TEST_ENVOY="$ENVOY_BIN"
export DM_TEST_PYTHON="$TOOLS_PYTHON"
export DM_TEST_NGINX="$NGINX_BIN"
export DM_TEST_AUTHZ_MODULE="$PWD/target/debug"

log "cargo test"
test_log=$(mktemp)
cargo test --workspace --locked --no-fail-fast -- --test-threads 4 2>&1 | tee "$test_log"
test_rc=${PIPESTATUS[0]}
read -r passed failed < <(awk '
  /^test result: / { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
  END { print p + 0, f + 0 }' "$test_log")
# A binary that crashed or failed to build prints no result line of its own.
broken=$(sed -nE 's/^error: ([0-9]+) targets? failed.*/\1/p' "$test_log" | tail -n 1)
[ -n "$broken" ] || broken=$(grep -cE '^error: (test failed|could not compile)' "$test_log" || true)
failed_binaries=$(grep -cE '^test result: FAILED' "$test_log" || true)
if [ "$broken" -gt "$failed_binaries" ]; then
  failed=$((failed + broken - failed_binaries))
fi
if [ "$test_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1
  failed_steps+=("cargo test (exit $test_rc)")
fi
rm -f "$test_log"

# After the tests, which built the binaries it inspects.
step "deployment: Envoy configs, kustomize, schemas, Dockerfile (offline)" ./scripts/check-deploy.sh
step "API reference current (docs/openapi.json, docs/api.md)" ./scripts/render-api-docs.sh --check
step "API fuzzing (schemathesis; SQLite and PostgreSQL)" ./scripts/fuzz-api.sh sqlite postgres

failed=$((failed + ${#failed_steps[@]}))
if [ ${#failed_steps[@]} -gt 0 ]; then
  log "failed steps: $(printf '%s; ' "${failed_steps[@]}")"
fi
if [ "$failed" -eq 0 ] && [ "$test_rc" -eq 0 ]; then
  log "all checks passed in $((SECONDS - started))s"
else
  log "FAILED after $((SECONDS - started))s"
fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$test_rc" -eq 0 ]
