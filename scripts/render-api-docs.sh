#!/usr/bin/env bash
# Writes docs/openapi.json (from `issuer openapi`) and docs/api.md (rendered
# from it). With --check, fails if either differs from what the code
# produces now (./scripts/test.sh runs that).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -q --bin issuer
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
target/debug/issuer openapi >"$tmp/openapi.json"
python3 scripts/render-api-docs.py <"$tmp/openapi.json" >"$tmp/api.md"
if [ "${1:-}" = "--check" ]; then
  for f in openapi.json api.md; do
    cmp -s "$tmp/$f" "docs/$f" || { echo "render-api-docs: docs/$f is stale; run scripts/render-api-docs.sh" >&2; exit 1; }
  done
  echo "render-api-docs: docs/ is current"
else
  cp "$tmp/openapi.json" "$tmp/api.md" docs/
fi
