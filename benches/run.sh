#!/usr/bin/env bash
# One benchmark run, everything side by side on this machine and on loopback:
#   1. Envoy alone (direct response)            – the floor
#   2. Envoy + a do-nothing ext_authz server    – the cost of the hop itself
#   3. Envoy + jwt_authn, with / without its token cache
#   4. Envoy + the sidecar, cached / uncached tokens
#   5. Envoy + the sidecar with 100k live revocations
#   6. Envoy + the same decision as a dynamic module, cached / uncached
#   and the sidecar's gRPC handler alone; then the issuer: login storm,
#   refresh throughput (SQLite, PostgreSQL), revocation lag (one replica;
#   two replicas with and without Redis), the OAuth token endpoint (code
#   exchange, refresh grant) beside password login and the issuer's own
#   refresh. Ends with the micro-benchmarks.
# Writes benches/results/<time>.jsonl and .md (the README's table).
# BENCH_SECONDS (default 5) sets each load run's length.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

secs=${BENCH_SECONDS:-5}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  stop_services
}
trap cleanup EXIT

log "building release binaries"
cargo build --release --locked -p issuer -p sidecar -p dm-benches -p authz-module
export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$PWD/target/release"
ensure_tools_venv
bin=target/release
mkdir -p benches/results
stamp=$(date +%Y%m%d-%H%M%S)
results="benches/results/$stamp.jsonl"
work=$(mktemp -d /tmp/dm-bench.XXXXXX)
issuer_url=http://bench.issuer
head -c 32 /dev/urandom | base64 >"$work/kek"

wait_http() { # url seconds
  local deadline=$((SECONDS + $2))
  until curl -fsS "$1" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$1 not ready"
    sleep 0.1
  done
}

start_issuer() { # name database-url [extra args…]; sets ISSUER_PORT and ISSUER_PID
  local name=$1 db=$2; shift 2
  ISSUER_PORT=$(free_port)
  ISSUER_URL=$issuer_url "$bin/issuer" serve --listen "127.0.0.1:$ISSUER_PORT" --database-url "$db" \
    --kek-file "$work/kek" --rate-limit-login off --rate-limit-register off --rate-limit-refresh off \
    --rate-limit-password off --rate-limit-mfa off --rate-limit-other off "$@" >"$work/$name.log" 2>&1 &
  ISSUER_PID=$!
  pids+=("$ISSUER_PID")
  wait_http "http://127.0.0.1:$ISSUER_PORT/ready" 30
}

start_sidecar() { # name issuer-port [extra args…]; sets SIDECAR_PORT, SIDECAR_ADMIN and SIDECAR_PID
  local name=$1 port=$2; shift 2
  SIDECAR_PORT=$(free_port)
  local admin; admin=$(free_port)
  SIDECAR_ADMIN="127.0.0.1:$admin"
  "$bin/sidecar" serve --listen "127.0.0.1:$SIDECAR_PORT" --admin-listen "127.0.0.1:$admin" \
    --issuer-url "http://127.0.0.1:$port" --expected-issuer "$issuer_url" \
    --policy benches/policy.yaml "$@" >"$work/$name.log" 2>&1 &
  SIDECAR_PID=$!
  pids+=("$SIDECAR_PID")
  wait_http "http://127.0.0.1:$admin/ready" 60
}

start_envoy() { # case authz-port; sets ENVOY_PORT and ENVOY_PID
  ENVOY_PORT=$(free_port)
  local admin; admin=$(free_port)
  python3 benches/envoy/render.py "$1" "$ENVOY_PORT" "$admin" "$2" "$ISSUER_PORT" "$issuer_url" >"$work/envoy-$1.yaml"
  "$ENVOY_BIN" -c "$work/envoy-$1.yaml" --concurrency 1 --disable-hot-restart -l error >"$work/envoy-$1.log" 2>&1 &
  ENVOY_PID=$!
  pids+=("$ENVOY_PID")
  wait_http "http://127.0.0.1:$admin/ready" 30
  case $1 in module*) # judging (401 without a token), not failing closed (503)
    local deadline=$((SECONDS + 30))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ENVOY_PORT/ai/chat")" = 401 ]; do
      [ $SECONDS -lt $deadline ] || die "the module in envoy-$1 has no keys"
      sleep 0.1
    done;;
  esac
}

closed_loop() { # label target tokens-file cpu-pids [loadgen args…]
  local label=$1 target=$2 tokens=$3 cpu=$4; shift 4
  local token_args=()
  [ -n "$tokens" ] && token_args=(--tokens "$tokens")
  log "$label: closed loop"
  "$bin/loadgen" --label "$label" --target "$target" "${token_args[@]}" --cpu-pids "$cpu" \
    --seconds "$secs" --connections 32 "$@" | tee -a "$results"
}

fixed_rates() { # label target tokens-file cpu-pids [loadgen args…]
  local label=$1 target=$2 tokens=$3 cpu=$4; shift 4
  local token_args=()
  [ -n "$tokens" ] && token_args=(--tokens "$tokens")
  for rate in 1000 2000 5000; do
    log "$label: $rate rps"
    "$bin/loadgen" --label "$label" --target "$target" "${token_args[@]}" --cpu-pids "$cpu" \
      --seconds "$secs" --connections 16 --rate "$rate" "$@" | tee -a "$results"
  done
}

# Cases run side by side: every Envoy is up at once, and the closed-loop
# (maximum throughput) runs are interleaved over $rounds rounds, so a noisy
# moment on this machine hits every case alike; the report takes medians.
rounds=${BENCH_ROUNDS:-3}
case_labels=() case_targets=() case_tokens=() case_cpus=() case_extra=()
add_envoy_case() { # label envoy-case authz-port authz-pid tokens
  start_envoy "$2" "$3"
  local cpu=$ENVOY_PID
  [ -n "$4" ] && cpu="$cpu,$4"
  case_labels+=("$1") case_targets+=("http://127.0.0.1:$ENVOY_PORT/ai/chat") case_tokens+=("$5") case_cpus+=("$cpu") case_extra+=("")
}
add_grpc_case() { # label sidecar-port sidecar-pid tokens
  case_labels+=("$1") case_targets+=("127.0.0.1:$2") case_tokens+=("$4") case_cpus+=("$3") case_extra+=("--grpc")
}
run_cases() {
  local r i
  for ((r = 1; r <= rounds; r++)); do
    for i in "${!case_labels[@]}"; do
      # shellcheck disable=SC2086
      closed_loop "${case_labels[$i]}" "${case_targets[$i]}" "${case_tokens[$i]}" "${case_cpus[$i]}" ${case_extra[$i]}
    done
  done
  for i in "${!case_labels[@]}"; do
    # shellcheck disable=SC2086
    fixed_rates "${case_labels[$i]}" "${case_targets[$i]}" "${case_tokens[$i]}" "${case_cpus[$i]}" ${case_extra[$i]}
  done
  case_labels=() case_targets=() case_tokens=() case_cpus=() case_extra=()
}

log "issuer (SQLite) and token fixtures"
start_issuer issuer "sqlite://$work/issuer.db"
"$bin/issuer-bench" mint --database-url "sqlite://$work/issuer.db" --kek-file "$work/kek" \
  --issuer-url "$issuer_url" --count 100 --out "$work/tokens.txt"

noop_port=$(free_port)
"$bin/noop-authz" "127.0.0.1:$noop_port" & noop_pid=$!; pids+=("$noop_pid")
start_sidecar sidecar "$ISSUER_PORT"
cached_sidecar_port=$SIDECAR_PORT cached_sidecar_pid=$SIDECAR_PID
start_sidecar sidecar-nocache "$ISSUER_PORT" --token-cache-capacity 0
nocache_port=$SIDECAR_PORT nocache_pid=$SIDECAR_PID
start_sidecar sidecar-uds "$ISSUER_PORT" --listen-unix "$work/authz.sock"
uds_pid=$SIDECAR_PID

# The floor, the hop, jwt_authn and the sidecar (cases 1-4b); the module (6a, 6b).
add_baseline_cases() {
  add_envoy_case "1. Envoy alone (direct response)" direct "$noop_port" "" "$work/tokens.txt"
  add_envoy_case "2. Envoy + no-op ext_authz" ext_authz "$noop_port" "$noop_pid" "$work/tokens.txt"
  add_envoy_case "3a. Envoy jwt_authn, token cache" jwt_cached "$noop_port" "" "$work/tokens.txt"
  add_envoy_case "3b. Envoy jwt_authn, no cache" jwt_uncached "$noop_port" "" "$work/tokens.txt"
  add_envoy_case "4a. Envoy + sidecar, cached tokens" ext_authz "$cached_sidecar_port" "$cached_sidecar_pid" "$work/tokens.txt"
  add_envoy_case "4b. Envoy + sidecar, uncached (every check verifies)" ext_authz "$nocache_port" "$nocache_pid" "$work/tokens.txt"
}
add_module_cases() { # the module's authz cluster is unused: any port
  add_envoy_case "6a. Envoy + module, cached tokens" module "$noop_port" "" "$work/tokens.txt"
  add_envoy_case "6b. Envoy + module, uncached (every request verifies)" module_nocache "$noop_port" "" "$work/tokens.txt"
}

# BENCH_ONLY=module: the module beside the floor, the hop, jwt_authn and the
# sidecar (issue 17, step 2).
if [ "${BENCH_ONLY:-}" = module ]; then
  add_baseline_cases
  add_module_cases
  run_cases
  # The same follower code in both: the lag should not differ. ($ENVOY_PORT
  # is the last case's Envoy: the module's.)
  for judge in "--sidecar 127.0.0.1:$cached_sidecar_port|the sidecar" "--envoy http://127.0.0.1:$ENVOY_PORT/ai/chat|the module in Envoy"; do
    # shellcheck disable=SC2086
    "$bin/issuer-bench" revocation-lag --issuer-url "http://127.0.0.1:$ISSUER_PORT" ${judge%%|*} \
      --count 300 --label "revocation lag through ${judge#*|}, one replica (SQLite)" | tee -a "$results"
  done
  python3 benches/report.py "$results" >"benches/results/$stamp.md"
  cat "benches/results/$stamp.md"
  exit 0
fi

# BENCH_ONLY=transport: just the sidecar over TCP and over a Unix socket,
# side by side (issue 17, step 1).
if [ "${BENCH_ONLY:-}" = transport ]; then
  add_envoy_case "4a. Envoy + sidecar, cached tokens" ext_authz "$cached_sidecar_port" "$cached_sidecar_pid" "$work/tokens.txt"
  add_envoy_case "4c. Envoy + sidecar over a Unix socket, cached tokens" ext_authz "$work/authz.sock" "$uds_pid" "$work/tokens.txt"
  run_cases
  # (latest.md stays the full run's.)
  python3 benches/report.py "$results" >"benches/results/$stamp.md"
  cat "benches/results/$stamp.md"
  exit 0
fi

log "seeding 100k live revocations (in a copy of the database, for case 5)"
python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))' \
  "$work/issuer.db" "$work/issuer-100k.db"
"$bin/issuer-bench" seed-revocations --database-url "sqlite://$work/issuer-100k.db" --count 100000 | tee -a "$results"
main_issuer_port=$ISSUER_PORT main_issuer_pid=$ISSUER_PID
start_issuer issuer-100k "sqlite://$work/issuer-100k.db"
start_sidecar sidecar-100k "$ISSUER_PORT"
revoked_port=$SIDECAR_PORT revoked_pid=$SIDECAR_PID
ISSUER_PORT=$main_issuer_port ISSUER_PID=$main_issuer_pid

# Every case sends the same bearer tokens, so request sizes (and Envoy's
# header work) are alike; only the authorisation differs.
add_baseline_cases
add_envoy_case "4c. Envoy + sidecar over a Unix socket, cached tokens" ext_authz "$work/authz.sock" "$uds_pid" "$work/tokens.txt"
add_envoy_case "5. Envoy + sidecar, 100k live revocations" ext_authz "$revoked_port" "$revoked_pid" "$work/tokens.txt"
add_module_cases
add_grpc_case "sidecar gRPC handler alone (cached)" "$cached_sidecar_port" "$cached_sidecar_pid" "$work/tokens.txt"
run_cases
pkill -P $$ envoy 2>/dev/null || true
kill "$nocache_pid" "$cached_sidecar_pid" "$uds_pid" "$noop_pid" "$revoked_pid" 2>/dev/null || true

log "issuer: login storm (OWASP argon2id) with refresh and JWKS beside it"
"$bin/issuer-bench" login-storm --url "http://127.0.0.1:$ISSUER_PORT" --concurrency 8 --seconds $((secs * 2)) | tee -a "$results"
"$bin/issuer-bench" login-storm --url "http://127.0.0.1:$ISSUER_PORT" --rate 60 --seconds $((secs * 2)) | tee -a "$results"
"$bin/issuer-bench" refresh --url "http://127.0.0.1:$ISSUER_PORT" --label "refresh, SQLite" --seconds "$secs" | tee -a "$results"
"$bin/issuer-bench" github-sign-in --count 200 | tee -a "$results"
"$bin/oauth-bench" --seconds "$secs" | tee -a "$results"
"$bin/issuer-bench" admin-change-lag --count 100 | tee -a "$results"
"$TOOLS_PYTHON" benches/mfa_latency.py "$bin/issuer" --count 40 | tee -a "$results"

log "revocation lag, one replica"
start_sidecar sidecar-lag "$ISSUER_PORT"
"$bin/issuer-bench" revocation-lag --issuer-url "http://127.0.0.1:$ISSUER_PORT" --sidecar "127.0.0.1:$SIDECAR_PORT" --sidecar-admin "$SIDECAR_ADMIN" \
  --count 1000 --label "revocation lag, one replica (SQLite)" | tee -a "$results"
kill "$SIDECAR_PID" "$ISSUER_PID" 2>/dev/null || true

start_postgres
start_redis
"$bin/issuer-bench" rate-limit-cost --redis-url "$REDIS_URL" | tee -a "$results"
pg_db=$POSTGRES_URL
start_issuer issuer-pg-a "$pg_db" --redis-url "$REDIS_URL"
a_port=$ISSUER_PORT
"$bin/issuer-bench" refresh --url "http://127.0.0.1:$a_port" --label "refresh, PostgreSQL" --seconds "$secs" | tee -a "$results"
"$bin/issuer-bench" user-search --postgres-url "$POSTGRES_URL" --users 1000000 | tee -a "$results"
oauth_db="oauth_bench_$(date +%s)"
psql "$POSTGRES_URL" -q -c "CREATE DATABASE $oauth_db"
pg_oauth="${POSTGRES_URL%/*}/$oauth_db"
"$bin/oauth-bench" --database-url "$pg_oauth" --seconds "$secs" | tee -a "$results"
start_issuer issuer-pg-b "$pg_db" --redis-url "$REDIS_URL" --feed-poll-ms 60000 --feed-heartbeat-ms 20000
start_sidecar sidecar-b "$ISSUER_PORT"
"$bin/issuer-bench" revocation-lag --issuer-url "http://127.0.0.1:$a_port" --sidecar "127.0.0.1:$SIDECAR_PORT" --sidecar-admin "$SIDECAR_ADMIN" \
  --count 1000 --label "revocation lag, two replicas + Redis (PostgreSQL)" | tee -a "$results"
start_issuer issuer-pg-c "$pg_db"
start_sidecar sidecar-c "$ISSUER_PORT"
"$bin/issuer-bench" revocation-lag --issuer-url "http://127.0.0.1:$a_port" --sidecar "127.0.0.1:$SIDECAR_PORT" --sidecar-admin "$SIDECAR_ADMIN" \
  --count 1000 --concurrency 50 --label "revocation lag, two replicas, no Redis (1 s poll)" | tee -a "$results"

python3 benches/report.py "$results" >"benches/results/$stamp.md"
cp "benches/results/$stamp.md" benches/results/latest.md
log "micro-benchmarks (criterion)"
cargo bench --locked -p dm-benches --bench micro -- --warm-up-time 1 --measurement-time 3 2>&1 \
  | grep -E '^[a-z].*|time:' | tee "benches/results/$stamp-micro.txt"
cat benches/results/latest.md
log "results: $results, benches/results/latest.md"
