#!/usr/bin/env bash
# Runs the whole test suite N times in a row (default 20) against one set of
# throwaway services, on a clean clone of HEAD with its own build, and reports
# how many runs failed and which tests. Not part of CI: a local flake hunt.
#   ./scripts/flake-loop.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
source scripts/lib/services.sh
trap stop_services EXIT

work=$(mktemp -d /tmp/dm-flake.XXXXXX)
git clone -q . "$work/src" || die "clone failed"
ensure_tools_venv
ensure_nginx
start_postgres
start_redis
export DM_REQUIRE_SERVICES=1 DM_TEST_POSTGRES_URL="$POSTGRES_URL" DM_TEST_REDIS_URL="$REDIS_URL" \
  DM_TEST_ENVOY="$ENVOY_BIN" DM_TEST_PYTHON="$TOOLS_PYTHON" DM_TEST_NGINX="$NGINX_BIN"
cd "$work/src"
log "building tests at $(git rev-parse --short HEAD)"
cargo test --workspace --locked --no-run >"$work/build.log" 2>&1 || { tail -20 "$work/build.log"; die "build failed"; }

failed_runs=0
: >"$work/failures"
for i in $(seq 1 "$runs"); do
  started=$SECONDS
  cargo test --workspace --locked --no-fail-fast -- --test-threads 4 >"$work/run-$i.log" 2>&1
  rc=$?
  passed=$(awk '/^test result: / { for (i = 1; i <= NF; i++) if ($(i) ~ /^passed;?$/) p += $(i-1) } END { print p + 0 }' "$work/run-$i.log")
  if [ "$rc" -ne 0 ]; then
    failed_runs=$((failed_runs + 1))
    grep -E '^test .* FAILED$|^    [a-z_:]+$' "$work/run-$i.log" | sed "s/^/run $i: /" | tee -a "$work/failures"
  fi
  echo "run $i/$runs: exit $rc, $passed passed, $((SECONDS - started)) s"
done
echo "flake loop: $runs runs, $failed_runs failed (logs in $work)"
[ "$failed_runs" -eq 0 ]
