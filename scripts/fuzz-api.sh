#!/usr/bin/env bash
# Property-based fuzzing of the issuer's HTTP API with schemathesis, driven
# by the OpenAPI document the issuer serves (/openapi.json). For each backend
# given (sqlite, postgres), a fresh issuer is fuzzed as a plain user, as an
# admin and as a sidecar (feed token). Fails on any server error, any status,
# content type, header or body the document does not describe.
#
# usage: fuzz-api.sh sqlite|postgres...   (postgres needs DM_TEST_POSTGRES_URL)
# FUZZ_EXAMPLES (default 40) bounds the cases per operation and phase;
# FUZZ_SEED changes the (fixed, so CI is repeatable) seed.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${TOOLS_PYTHON:-.tools/venv/bin/python}
st="$(dirname "$py")/schemathesis"
examples=${FUZZ_EXAMPLES:-40}
[ -x "$st" ] || { echo "fuzz-api: schemathesis not found in $(dirname "$py")" >&2; exit 1; }
cargo build --locked -q --bin issuer
tmp=$(mktemp -d)
# The document itself first: valid OpenAPI 3.1.
target/debug/issuer openapi >"$tmp/openapi.json"
"$py" -c 'import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))' \
  "$tmp/openapi.json" || { echo "fuzz-api: the OpenAPI document is not valid" >&2; exit 1; }
echo "fuzz-api: the OpenAPI document is valid OpenAPI 3.1"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

password='correct horse battery staple'
feed_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
head -c 32 /dev/urandom | base64 >"$tmp/kek"
total_cases=0
status=0

fuzz_backend() {
  local backend=$1 db
  case "$backend" in
    sqlite) db="sqlite://$tmp/$backend.db" ;;
    postgres)
      [ -n "${DM_TEST_POSTGRES_URL:-}" ] || { echo "fuzz-api: DM_TEST_POSTGRES_URL is required" >&2; exit 1; }
      local name="fuzz_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      psql "$DM_TEST_POSTGRES_URL" -q -c "CREATE DATABASE $name"
      db="${DM_TEST_POSTGRES_URL%/*}/$name" ;;
    *) echo "fuzz-api: unknown backend $backend" >&2; exit 1 ;;
  esac
  local log="$tmp/$backend.log"
  # Generous limits (the fuzzer is one client sending thousands of
  # requests) and cheap hashing; everything else as shipped.
  ISSUER_NEW_USER_PASSWORD="$password" target/debug/issuer users create \
    --database-url "$db" --email admin@fuzz.example --admin >/dev/null
  target/debug/issuer serve --listen 127.0.0.1:0 --log-format json --database-url "$db" \
    --kek-file "$tmp/kek" --feed-token "$feed_token" \
    --argon2-memory-kib 64 --argon2-iterations 1 \
    --rate-limit-login 1000000/60 --rate-limit-register 1000000/60 --rate-limit-refresh 1000000/60 \
    --rate-limit-password 1000000/60 --rate-limit-mfa 1000000/60 --rate-limit-other 1000000/60 \
    2>"$log" &
  pids+=($!)
  local addr="" i
  for i in $(seq 1 100); do
    addr=$(sed -nE 's/.*"addr":"([^"]+)".*"message":"issuer listening".*/\1/p; s/.*"message":"issuer listening".*"addr":"([^"]+)".*/\1/p' "$log" | head -n 1)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log" >&2; echo "fuzz-api: the issuer did not start" >&2; exit 1; }
  local url="http://$addr"
  token() { # email
    "$py" - "$url" "$1" "$password" <<'PY'
import json, sys, urllib.request
url, email, password = sys.argv[1:4]
def post(path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        return json.load(urllib.request.urlopen(req))
    except urllib.error.HTTPError as e:
        return json.load(e)
if not email.startswith("admin@"):
    post("/auth/register", {"email": email, "password": password})
print(post("/auth/login", {"email": email, "password": password})["access_token"])
PY
  }
  local user admin
  user=$(token "user@fuzz.example")
  admin=$(token "admin@fuzz.example")
  run() { # label header args...
    local label=$1 header=$2
    shift 2
    echo "==> schemathesis: $backend, $label"
    local out="$tmp/$backend-$label.out"
    if ! "$st" --config-file scripts/schemathesis.toml run "$url/openapi.json" -H "$header" --max-examples "$examples" --seed "${FUZZ_SEED:-20261201}" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth,negative_data_rejection \
        --request-timeout 10 --no-color "$@" >"$out" 2>&1; then
      cat "$out"
      status=1
    else
      { sed -n "/WARNINGS/,/SUMMARY/p" "$out" | grep -vE "^ *$" | head -n 40; } || true
      tail -n 4 "$out"
    fi
    local n
    n=$(sed -nE 's/^ *([0-9]+) generated.*/\1/p' "$out" | tail -n 1)
    total_cases=$((total_cases + ${n:-0}))
  }
  # Ending the fuzzer's own session would leave it testing 401s only: the
  # logout and password routes are left out, and so is the stateful phase,
  # whose inferred links find the caller's own ids (its session, its user)
  # and end or disable them. Integration tests cover those paths.
  local keep=(--exclude-path /auth/logout --exclude-path /auth/logout-all --exclude-path /auth/password
    --phases examples,coverage,fuzzing)
  run user "Authorization: Bearer $user" "${keep[@]}" --exclude-path-regex '^/(admin|internal)/'
  # Schemathesis finds the admin's own id and resets its MFA or ends its
  # sessions (both allowed, both end the session): those go last.
  local own='^/admin/users/\{id\}/(mfa|logout-all)$'
  run admin "Authorization: Bearer $admin" "${keep[@]}" --include-path-regex '^/admin/' \
    --exclude-path-regex "$own"
  run admin-last "Authorization: Bearer $admin" "${keep[@]}" --include-path-regex "$own"
  run sidecar "Authorization: Bearer $feed_token" --include-path-regex '^/internal/' \
    --exclude-path /internal/revocations/stream
  # The feed is a stream that stays open until the client leaves: each case
  # costs the request timeout, so a few cases only.
  run feed-stream "Authorization: Bearer $feed_token" --include-path /internal/revocations/stream \
    --phases fuzzing --max-examples 3 --request-timeout 2
  if grep -q '"level":"ERROR"' "$log"; then
    grep '"level":"ERROR"' "$log" | head -n 20 >&2; cp "$log" /tmp/fuzz-issuer-$backend.log
    echo "fuzz-api: the issuer logged errors ($backend)" >&2
    status=1
  fi
}

for backend in "$@"; do fuzz_backend "$backend"; done
echo "fuzz-api: $total_cases cases, $([ $status = 0 ] && echo '0 failures' || echo FAILURES)"
exit $status
