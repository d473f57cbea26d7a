#!/usr/bin/env bash
# The whole stack on this machine, on the embedded default (SQLite):
# issuer :3002, sidecar :9001 (admin :9002), Envoy :8080, and echo upstreams
# standing in for the AI gateway (:3001) and the memory service (:3003).
# Runs a walk-through, then keeps serving until Ctrl-C.
# DEMO_EXIT=1 exits after the walk-through (used to check the demo itself).
# DEMO_AUTHZ=module decides inside Envoy with the dynamic module
# (libdevmentor_authz.so) instead of the sidecar: the same walk-through,
# no sidecar process.
# With the sidecar, a sample app (:8081) signs people in with Envoy's own
# OAuth2 filter, the issuer as its OpenID Provider.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in 8080 8081 9901 9001 9002 3001 3002 3003 3999 2525; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is in use; stop what holds it first"; fi
done

command -v curl >/dev/null || apt_install curl
ensure_build_deps
log "building release binaries"
module=${DEMO_AUTHZ:-sidecar}
[[ $module == sidecar || $module == module ]] || die "DEMO_AUTHZ: sidecar or module"
cargo build --release --locked -p issuer -p sidecar -p fake-github -p authz-module -p devmentor-cli
ensure_tools_venv
mkdir -p data/sidecar data/logs

log "starting a FAKE GitHub on :3999 (not GitHub: it stands in for it, offline)"
cat >data/fake-github.yaml <<'YAML'
client_id: demo-client
client_secret: demo-secret
redirect_uri: http://localhost:8080/auth/github/callback
users:
  - id: 583231
    login: octocat
    name: The Octocat (fake)
    emails:
      - { email: octocat@example.com, primary: true, verified: true }
YAML
printf 'demo-secret' >data/github-client-secret
./target/release/fake-github --config data/fake-github.yaml --port 3999 --signed-in octocat \
  >data/logs/fake-github.log 2>&1 &
pids+=($!)

log "starting an SMTP sink on :2525 (aiosmtpd; every mail lands in data/mail/)"
rm -rf data/mail
"$TOOLS_PYTHON" scripts/smtp_sink.py data/mail --port 2525 >data/logs/smtp-sink.log 2>&1 &
pids+=($!)
wait_port 127.0.0.1 2525 30 || { cat data/logs/smtp-sink.log; die "SMTP sink did not start"; }

# The issuer's public URL is Envoy's: browsers and tokens see one origin.
log "starting the issuer on :3002 (SQLite at data/issuer.db), public at http://localhost:8080"
ISSUER_URL=http://localhost:8080 ./target/release/issuer serve --listen 127.0.0.1:3002 \
  --database-url sqlite://data/issuer.db \
  --allowed-return-origins http://localhost:8080 --trusted-proxy-hops 1 --rate-limit-login 15/60 \
  --github-client-id demo-client --github-client-secret-file data/github-client-secret \
  --github-web-url http://127.0.0.1:3999 --github-api-url http://127.0.0.1:3999 \
  --smtp-url smtp://127.0.0.1:2525 --mail-from 'DevMentor Auth <no-reply@localhost>' \
  >data/logs/issuer.log 2>&1 &
pids+=($!)
wait_port 127.0.0.1 3002 30 || { cat data/logs/issuer.log; die "issuer did not start"; }

authz_args=(--issuer-url http://127.0.0.1:3002 --expected-issuer http://localhost:8080
  --policy "$PWD/envoy/policy.yaml" --state-dir "$PWD/data/sidecar")
if [[ $module == sidecar ]]; then
  log "starting the sidecar on :9001 (admin :9002)"
  ./target/release/sidecar serve --listen 127.0.0.1:9001 --admin-listen 127.0.0.1:9002 \
    "${authz_args[@]}" >data/logs/sidecar.log 2>&1 &
  pids+=($!)
fi

log "starting echo upstreams on :3001 (AI gateway) and :3003 (memory service)"
python3 scripts/echo_upstream.py ai-gateway 3001 & pids+=($!)
python3 scripts/echo_upstream.py memory-service 3003 & pids+=($!)

sample=()
if [[ $module == sidecar ]]; then
  # A client of the issuer, registered from the shell (again on each run:
  # its secret is shown once). Envoy reads the secret and its cookie key
  # from files, as a deployment would.
  log "registering the sample app (OAuth client sample-app) for Envoy's OAuth2 filter on :8081"
  db=sqlite://data/issuer.db
  ./target/release/issuer clients delete sample-app --database-url "$db" >/dev/null 2>&1 || true
  registered=$(./target/release/issuer clients add sample-app --name "Sample app" --database-url "$db" \
    --redirect-uri http://127.0.0.1/oauth2/callback --scope openid --scope notes:read)
  printf '%s' "$(sed -n 's/^client_secret: //p' <<<"$registered")" >data/sample-app-secret
  head -c 32 /dev/urandom | base64 | tr -d '\n' >data/sample-app-hmac
  chmod 600 data/sample-app-secret data/sample-app-hmac
  sample=(--with sample_app --set SAMPLE_APP_PORT=8081 --set SAMPLE_CLIENT_ID=sample-app
    --set AUTHORIZE_URL=http://localhost:8080/auth/ui/authorize
    --set "SAMPLE_SECRET_FILE=$PWD/data/sample-app-secret" --set "SAMPLE_HMAC_FILE=$PWD/data/sample-app-hmac")
fi

if [[ $module == module ]]; then
  log "starting Envoy on :8080, deciding with the module (target/release/libdevmentor_authz.so)"
  export ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$PWD/target/release
  module_args=()
  for a in "${authz_args[@]}"; do module_args+=("--module-arg=$a"); done
  python3 scripts/render-envoy.py --profile demo --authz module "${module_args[@]}" >data/envoy.yaml
else
  log "starting Envoy on :8080 (and the sample app on :8081)"
  scripts/render-envoy.sh "${sample[@]}" >data/envoy.yaml
fi
"$ENVOY_BIN" -c data/envoy.yaml --concurrency 1 --disable-hot-restart -l warning \
  >data/logs/envoy-access.log 2>data/logs/envoy.log &
pids+=($!)

# Ready: the sidecar says so; the module judges (401 without a token)
# instead of failing closed (503).
authz_ready() {
  if [[ $module == module ]]; then
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/ai/models/)" = 401 ]
  else
    curl -fsS http://127.0.0.1:9002/ready >/dev/null 2>&1
  fi
}
for _ in $(seq 100); do
  curl -fsS http://127.0.0.1:9901/ready >/dev/null 2>&1 && authz_ready && break
  sleep 0.1
done
curl -fsS http://127.0.0.1:9901/ready >/dev/null || { tail data/logs/envoy.log; die "envoy not ready"; }
authz_ready || { tail data/logs/sidecar.log data/logs/envoy.log 2>/dev/null; die "$module not ready"; }

token=""
admin=""
step() {
  local line="$*"
  [ -n "$token" ] && line=${line//$token/\$TOKEN}
  [ -n "$admin" ] && line=${line//$admin/\$ADMIN}
  # Any other bearer token (a service's, the gateway's, the CLI's): short.
  line=$(printf '%s' "$line" | sed -E 's/(Bearer )(eyJ[A-Za-z0-9_-]{8})[A-Za-z0-9._-]+/\1\2…/g')
  printf '\n\033[1m$ %s\033[0m\n' "$line"
}
show() { step "$*"; "$@" -s -w '\n→ HTTP %{http_code}\n'; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

email="demo-$(date +%s)@example.com"
password="correct horse battery staple"
show curl -X POST localhost:8080/auth/register -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}"
step "curl -X POST localhost:8080/auth/login … (keeping the tokens)"
login=$(curl -s -X POST localhost:8080/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}")
token=$(printf '%s' "$login" | json_field access_token)
echo "access token: ${token:0:40}…"
show curl localhost:8080/ai/chat -H "authorization: Bearer $token"
show curl localhost:8080/ai/chat
show curl localhost:8080/ai/admin/settings -H "authorization: Bearer $token"
# Other spellings of the admin path: Envoy normalises what it can (then the
# same 403), and the sidecar refuses what an upstream could still rewrite (400).
show curl --path-as-is 'localhost:8080/ai/chat/../admin/settings' -H "authorization: Bearer $token"
show curl --path-as-is 'localhost:8080/ai/admin;x/settings' -H "authorization: Bearer $token"
show curl localhost:8080/memory/notes -H "authorization: Bearer $token" -H 'x-user-id: someone-else'
show curl -X POST localhost:8080/auth/logout -H "authorization: Bearer $token"
sleep 0.2
show curl localhost:8080/ai/chat -H "authorization: Bearer $token"

printf '\n\033[1m--- Sign in with GitHub (against the FAKE GitHub on :3999) ---\033[0m\n'
jar=$(mktemp); token=""
show curl -i -c "$jar" 'localhost:8080/auth/github/login?return_to=http://localhost:8080/memory/notes'
step "curl -L -b jar -c jar <that Location> (GitHub approves, the callback sets the refresh cookie, back to return_to)"
where=$(curl -sL -b "$jar" -c "$jar" -o /dev/null -w '%{url_effective} → HTTP %{http_code}' \
  "$(curl -s -o /dev/null -w '%{redirect_url}' -c "$jar" 'localhost:8080/auth/github/login?return_to=http://localhost:8080/memory/notes')")
echo "ended at $where (the page has no access token yet)"
step "curl -X POST -b jar localhost:8080/auth/refresh (the page trades its cookie for tokens)"
token=$(curl -s -X POST -b "$jar" -c "$jar" localhost:8080/auth/refresh | json_field access_token)
echo "access token: ${token:0:40}…"
show curl localhost:8080/auth/me -H "authorization: Bearer $token"
show curl localhost:8080/memory/notes -H "authorization: Bearer $token"

printf '\n\033[1m--- Teams: a team-scoped route (/memory/teams/{team}/…) ---\033[0m\n'
octo_id=$(curl -s localhost:8080/auth/me -H "authorization: Bearer $token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["user"]["id"])')
team="blue-$(date +%s)"
show curl localhost:8080/memory/teams/$team/notes -H "authorization: Bearer $token"
step "issuer users create --email admin-…@example.com --admin (the CLI, beside the running server)"
admin_email="admin-$(date +%s)@example.com"
ISSUER_NEW_USER_PASSWORD="$password" ./target/release/issuer users create --email "$admin_email" --admin \
  --database-url sqlite://data/issuer.db >/dev/null
admin=$(curl -s -X POST localhost:8080/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"$admin_email\",\"password\":\"$password\"}" | json_field access_token)
# The admin API is the issuer's own port: Envoy routes only /auth/ and /.well-known/ to it.
show curl -X POST localhost:3002/admin/teams -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d "{\"slug\":\"$team\",\"name\":\"Blue\",\"owner\":\"$octo_id\"}"
sleep 0.2
echo "(the membership changed what octocat's token should say: that token is now refused, and a refresh carries it)"
show curl localhost:8080/memory/teams/$team/notes -H "authorization: Bearer $token"
token=$(curl -s -X POST -b "$jar" -c "$jar" localhost:8080/auth/refresh | json_field access_token)
show curl localhost:8080/memory/teams/$team/notes -H "authorization: Bearer $token"
show curl localhost:8080/memory/teams/red/notes -H "authorization: Bearer $token"
rm -f "$jar"

printf '\n\033[1m--- Mail: email verification and password reset (through the SMTP sink on :2525) ---\033[0m\n'
# Waits for the first mail to $1 whose subject contains $2; prints its JSON path.
wait_mail() {
  for _ in $(seq 100); do
    f=$(grep -l "\"to\": \"$1\"" data/mail/*.json 2>/dev/null | xargs -r grep -l "$2" | head -n 1)
    [ -n "$f" ] && { echo "$f"; return 0; }
    sleep 0.1
  done
  die "no mail '$2' to $1 arrived"
}
mail_text() { python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print('To: '+m['to']+'\nSubject: '+m['subject']+'\n\n'+m['text'])" "$1"; }
mail_link() { python3 -c "import json,sys; print(next(w for w in json.load(open(sys.argv[1]))['text'].split() if 'token=' in w))" "$1"; }
step "ls data/mail (registration sent $email a verification mail)"
mail_text "$(wait_mail "$email" 'Confirm your email')" | sed 's/token=[^ ]*/token=…/'
show curl -X POST localhost:8080/auth/password/forgot -H 'content-type: application/json' -d "{\"email\":\"$email\"}"
show curl -X POST localhost:8080/auth/password/forgot -H 'content-type: application/json' -d '{"email":"nobody@example.com"}'
echo "(the same answer for an unknown address; only a real account gets mail)"
reset_mail=$(wait_mail "$email" 'Reset your password')
step "cat $reset_mail (the reset mail as the sink received it)"
mail_text "$reset_mail" | sed 's/token=[^ ]*/token=…/'
link=$(mail_link "$reset_mail")
reset_token=${link#*token=}
step "curl '<the link>' (a page with a form; opening it spends nothing)"
curl -s "$link" | grep -o '<form[^>]*>' || true
password="a brand new passphrase"
show curl -X POST localhost:8080/auth/password/reset -H 'content-type: application/json' \
  -d "{\"token\":\"$reset_token\",\"new_password\":\"$password\"}"
show curl -X POST localhost:8080/auth/password/reset -H 'content-type: application/json' \
  -d "{\"token\":\"$reset_token\",\"new_password\":\"another passphrase\"}"
echo "(single use; every session ended; a notice went to $email: $(basename "$(wait_mail "$email" 'password was changed')"))"

printf '\n\033[1m--- MFA: TOTP enrolment, a sign-in with a second factor, and step-up at the edge ---\033[0m\n'
totp() { "$TOOLS_PYTHON" -c 'import pyotp, sys, time; print(pyotp.TOTP(sys.argv[1]).at(int(time.time()) + int(sys.argv[2])))' "$1" "$2"; }
token=$(curl -s -X POST localhost:8080/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" | json_field access_token)
show curl localhost:8080/memory/vault/keys -H "authorization: Bearer $token"
curl -s -o /dev/null -D - localhost:8080/memory/vault/keys -H "authorization: Bearer $token" | grep -i '^www-authenticate' || true
step "curl -X POST localhost:8080/auth/mfa/totp -H 'authorization: Bearer \$TOKEN' (secret, otpauth URI and an SVG QR code, shown once)"
enrol=$(curl -s -X POST localhost:8080/auth/mfa/totp -H "authorization: Bearer $token")
secret=$(printf '%s' "$enrol" | json_field secret)
printf '%s' "$enrol" | python3 -c 'import json,sys; e=json.load(sys.stdin); print("secret:", e["secret"]); print("otpauth_uri:", e["otpauth_uri"]); print("qr_svg:", e["qr_svg"][:60] + "…")'
echo "(an authenticator app would scan the QR code; here Python's pyotp computes the codes)"
show curl -X POST localhost:8080/auth/mfa/totp/confirm -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d "{\"code\":\"$(totp "$secret" -30)\"}"
step "curl -X POST localhost:8080/auth/login … (the password alone is no longer enough)"
challenge=$(curl -s -X POST localhost:8080/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}")
echo "$challenge"
ticket=$(printf '%s' "$challenge" | json_field mfa_ticket)
step "curl -X POST localhost:8080/auth/mfa/verify -d '{\"mfa_ticket\":…,\"code\":\"<the app's code>\"}'"
token=$(curl -s -X POST localhost:8080/auth/mfa/verify -H 'content-type: application/json' \
  -d "{\"mfa_ticket\":\"$ticket\",\"code\":\"$(totp "$secret" 0)\"}" | json_field access_token)
printf '%s' "$token" | python3 -c 'import base64,json,sys; p=sys.stdin.read().split(".")[1]; c=json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4))); print({k: c[k] for k in ("amr","acr","auth_time")})'
show curl localhost:8080/memory/vault/keys -H "authorization: Bearer $token"

printf '\n\033[1m--- Abuse protection: sign-ins per client IP (demo: 15 a minute) and growing per-account delays after 5 failures ---\033[0m\n'
printf '\n\033[1m--- Machines: a CI job as itself, the AI gateway for a user, a CLI by device code ---\033[0m\n'
db=sqlite://data/issuer.db
for c in ci-deployer ai-gateway devmentor-cli; do
  ./target/release/issuer clients delete "$c" --database-url "$db" >/dev/null 2>&1 || true
done
step "issuer clients add ci-deployer --grant-type client_credentials --scope notes:read (a CI job's service account)"
ci_secret=$(./target/release/issuer clients add ci-deployer --name "CI deployer" --database-url "$db" \
  --grant-type client_credentials --scope notes:read | sed -n 's/^client_secret: //p')
step "curl -u ci-deployer:\$SECRET -d grant_type=client_credentials localhost:8080/auth/oauth2/token"
svc=$(curl -s -u "ci-deployer:$ci_secret" -d grant_type=client_credentials localhost:8080/auth/oauth2/token | json_field access_token)
echo "service token: ${svc:0:40}… (sub client:ci-deployer)"
show curl localhost:8080/memory/notes/today -H "authorization: Bearer $svc"
show curl localhost:8080/ai/chat -H "authorization: Bearer $svc"

step "issuer clients add ai-gateway --grant-type …token-exchange --scope memory:read --audience https://memory.devmentor.local --subject-client devmentor-auth"
gw_secret=$(./target/release/issuer clients add ai-gateway --name "AI gateway" --database-url "$db" \
  --grant-type urn:ietf:params:oauth:grant-type:token-exchange --scope memory:read \
  --audience https://memory.devmentor.local --subject-client devmentor-auth | sed -n 's/^client_secret: //p')
user_email="gateway-user-$(date +%s)@example.com"
curl -s -o /dev/null -X POST localhost:8080/auth/register -H 'content-type: application/json' \
  -d "{\"email\":\"$user_email\",\"password\":\"$password\"}"
token=$(curl -s -X POST localhost:8080/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"$user_email\",\"password\":\"$password\"}" | json_field access_token)
step "curl -u ai-gateway:\$SECRET localhost:8080/auth/oauth2/token -d grant_type=…token-exchange -d subject_token=\$TOKEN -d resource=https://memory.devmentor.local"
obo=$(curl -s -u "ai-gateway:$gw_secret" localhost:8080/auth/oauth2/token \
  -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange --data-urlencode "subject_token=$token" \
  -d subject_token_type=urn:ietf:params:oauth:token-type:access_token \
  -d resource=https://memory.devmentor.local | json_field access_token)
echo "the gateway's token for the user: ${obo:0:40}… (sub the user, act ai-gateway)"
show curl localhost:8080/memory/recall/today -H "authorization: Bearer $obo"
echo "(the user's own token is not for the memory service's recall route: the audience differs)"
show curl localhost:8080/memory/recall/today -H "authorization: Bearer $token"
show curl -X POST localhost:8080/auth/logout -H "authorization: Bearer $token"
sleep 0.2
echo "(the user signed out: what the gateway got for them is refused too)"
show curl localhost:8080/memory/recall/today -H "authorization: Bearer $obo"
token=""

step "issuer clients add devmentor-cli --public --first-party --grant-type …device_code --grant-type refresh_token"
./target/release/issuer clients add devmentor-cli --name "DevMentor CLI" --public --first-party --database-url "$db" \
  --grant-type urn:ietf:params:oauth:grant-type:device_code --grant-type refresh_token \
  --scope openid --scope email --scope notes:read >/dev/null
creds=data/devmentor-credentials.json
rm -f "$creds"
step "devmentor login --issuer http://localhost:8080 (over SSH too: no browser needs to reach this machine)"
DEVMENTOR_CREDENTIALS=$creds ./target/release/devmentor login --issuer http://localhost:8080 \
  --client-id devmentor-cli 2>data/logs/devmentor-login.log &
cli_pid=$!
for _ in $(seq 50); do grep -q 'enter the code' data/logs/devmentor-login.log && break; sleep 0.1; done
cat data/logs/devmentor-login.log
user_code=$(sed -n 's/^and enter the code: //p' data/logs/devmentor-login.log)
echo "(the user opens the page in any browser, signs in and approves; this script does it with curl)"
cli_jar=$(mktemp)
curl -s -o /dev/null -c "$cli_jar" -X POST localhost:8080/auth/ui/login -H 'sec-fetch-site: same-origin' \
  --data-urlencode "email=$user_email" --data-urlencode "password=$password"
answer_token=$(curl -s -b "$cli_jar" -X POST localhost:8080/auth/ui/device -H 'sec-fetch-site: same-origin' \
  --data-urlencode "user_code=$user_code" | sed -n 's/.*name="answer_token" value="\([^"]*\)".*/\1/p')
curl -s -b "$cli_jar" -X POST localhost:8080/auth/ui/device/answer -H 'sec-fetch-site: same-origin' \
  --data-urlencode "user_code=$user_code" --data-urlencode "answer_token=$answer_token" -d decision=allow \
  | grep -o 'Approved[^<]*'
rm -f "$cli_jar"
wait "$cli_pid"
tail -1 data/logs/devmentor-login.log
step "devmentor whoami"
DEVMENTOR_CREDENTIALS=$creds ./target/release/devmentor whoami
step 'curl localhost:8080/memory/notes/today -H "authorization: Bearer $(devmentor token)"'
curl -s -w '\n→ HTTP %{http_code}\n' localhost:8080/memory/notes/today \
  -H "authorization: Bearer $(DEVMENTOR_CREDENTIALS=$creds ./target/release/devmentor token)"
step "devmentor logout"
cli_token=$(DEVMENTOR_CREDENTIALS=$creds ./target/release/devmentor token)
DEVMENTOR_CREDENTIALS=$creds ./target/release/devmentor logout
sleep 0.2
show curl localhost:8080/memory/notes/today -H "authorization: Bearer $cli_token"

step "a personal access token for a script: POST /auth/tokens (needs a fresh sign-in; shown once)"
token=$(curl -s -X POST localhost:8080/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"$user_email\",\"password\":\"$password\"}" | json_field access_token)
created=$(curl -s -X POST localhost:8080/auth/tokens -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{"name":"demo script","scope":"notes:read","expires_in_days":7}')
pat=$(printf '%s' "$created" | json_field token)
pat_id=$(printf '%s' "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["personal_token"]["id"])')
echo "personal access token: ${pat:0:8}… (dmp_ + 30 random + a CRC-32 checksum secret scanners can check)"
step 'DEVMENTOR_PAT=dmp_… devmentor pat-token (exchanged for a short access token carrying its own session)'
pat_access=$(DEVMENTOR_PAT=$pat ./target/release/devmentor pat-token --issuer http://localhost:8080)
show curl localhost:8080/memory/notes/today -H "authorization: Bearer $pat_access"
show curl -X DELETE "localhost:8080/auth/tokens/$pat_id" -H "authorization: Bearer $token"
sleep 0.2
echo "(revoked: the access token it gave is refused at the edge too)"
show curl localhost:8080/memory/notes/today -H "authorization: Bearer $pat_access"

step "for i in 1..8: curl -X POST localhost:8080/auth/login (wrong password)"
for _ in $(seq 8); do
  printf '%s ' "$(curl -s -o /dev/null -w '%{http_code}' -X POST localhost:8080/auth/login \
    -H 'content-type: application/json' -d "{\"email\":\"$email\",\"password\":\"not the password\"}")"
done
echo
show curl -i -X POST localhost:8080/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"not the password\"}"

if [[ $module == sidecar ]]; then
  printf '\n\033[1m--- An app behind Envoy'"'"'s OAuth2 filter, the issuer as its OpenID Provider ---\033[0m\n'
  step "curl localhost:8081/memory/notes/today (the sample app: Envoy sends you to the issuer, with PKCE)"
  curl -s -o /dev/null -w '→ HTTP %{http_code}, Location: %{redirect_url}\n' http://127.0.0.1:8081/memory/notes/today
  step "curl localhost:8080/.well-known/openid-configuration (what any OIDC library reads)"
  curl -s localhost:8080/.well-known/openid-configuration | "$TOOLS_PYTHON" -c \
    'import json,sys; d=json.load(sys.stdin); print({k: d[k] for k in ("authorization_endpoint","token_endpoint","id_token_signing_alg_values_supported","code_challenge_methods_supported")})'
  echo "   A script stops here: open http://127.0.0.1:8081/memory/notes/today in a browser,"
  echo "   sign in, allow Sample app, and the memory service answers with x-client-id: sample-app."
  echo "   Disconnect it on http://localhost:8080/auth/ui/account and the next request is refused at the edge."
fi

if [[ $module == module ]]; then
  authz_line="decisions      inside Envoy (libdevmentor_authz.so; no sidecar process)"
else
  authz_line="sidecar admin  http://localhost:9002   (/ready, /metrics)
  Sample app     http://127.0.0.1:8081/memory/notes/today   (Envoy's OAuth2 filter; client sample-app)"
fi
cat <<TXT

The stack is up:
  Sign in        http://localhost:8080/auth/ui/login   (open in a browser: hosted pages)
  Envoy          http://localhost:8080   (access log: data/logs/envoy-access.log)
  issuer         http://localhost:3002   (/.well-known/jwks.json, /metrics; public via Envoy)
  fake GitHub    http://localhost:3999   (NOT GitHub; sign in: http://localhost:8080/auth/github/login)
  $authz_line
  SMTP sink      127.0.0.1:2525          (every mail the issuer sends: data/mail/*.eml and *.json)
Make an admin: ./target/release/issuer users create --email you@example.com --admin --database-url sqlite://data/issuer.db
TXT
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo "Ctrl-C stops everything."
wait
