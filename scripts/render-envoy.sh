#!/usr/bin/env bash
# Renders the demo's Envoy config to stdout (ports from the environment,
# defaulting to the demo's). The template and its other renderings:
# scripts/render-envoy.py.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--profile demo
  --set "ENVOY_PORT=${ENVOY_PORT:-8080}" --set "ENVOY_ADMIN_PORT=${ENVOY_ADMIN_PORT:-9901}"
  --set "SIDECAR_PORT=${SIDECAR_PORT:-9001}" --set "ISSUER_PORT=${ISSUER_PORT:-3002}"
  --set "AI_GATEWAY_PORT=${AI_GATEWAY_PORT:-3001}" --set "MEMORY_PORT=${MEMORY_PORT:-3003}")
if [[ -n "${OTEL_COLLECTOR:-}" ]]; then args+=(--set "OTEL=$OTEL_COLLECTOR"); fi
# Further arguments go to the renderer (the demo adds --with sample_app).
exec python3 scripts/render-envoy.py "${args[@]}" "$@"
