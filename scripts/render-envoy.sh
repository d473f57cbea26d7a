#!/usr/bin/env bash
# Renders envoy/front-proxy.yaml.tmpl to stdout. Ports come from the
# environment, defaulting to the demo's.
set -euo pipefail
cd "$(dirname "$0")/.."
sed -e "s/{{ENVOY_PORT}}/${ENVOY_PORT:-8080}/" \
    -e "s/{{ENVOY_ADMIN_PORT}}/${ENVOY_ADMIN_PORT:-9901}/" \
    -e "s/{{SIDECAR_PORT}}/${SIDECAR_PORT:-9001}/" \
    -e "s/{{ISSUER_PORT}}/${ISSUER_PORT:-3002}/" \
    -e "s/{{AI_GATEWAY_PORT}}/${AI_GATEWAY_PORT:-3001}/" \
    -e "s/{{MEMORY_PORT}}/${MEMORY_PORT:-3003}/" \
    envoy/front-proxy.yaml.tmpl
