#!/usr/bin/env bash
# The Envoy module resolves Envoy's callbacks when Envoy loads it (the .so
# is linked with BIND_NOW): every envoy_dynamic_module_callback_* it uses
# must be exported by the Envoy binary it is built for, or loading fails.
# usage: check-module-symbols.sh MODULE.so [ENVOY_ELF]
set -euo pipefail
module=${1:?usage: check-module-symbols.sh MODULE.so [ENVOY_ELF]}
cd "$(dirname "$0")/.."
envoy=${2:-$(ls .tools/venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1)}
[ -x "$envoy" ] || { echo "check-module-symbols: no Envoy binary (run ./scripts/test.sh)" >&2; exit 1; }
used=$(nm -D --undefined-only "$module" | awk '{print $2}' | grep '^envoy_dynamic_module_callback_' | sort -u)
[ -n "$used" ] || { echo "check-module-symbols: $module uses no Envoy callback?" >&2; exit 1; }
missing=$(comm -23 <(echo "$used") <(readelf --dyn-syms -W "$envoy" | awk '{print $8}' | sort -u))
if [ -n "$missing" ]; then
  echo "check-module-symbols: $("$envoy" --version | head -n1) does not export:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "check-module-symbols: $(echo "$used" | wc -l) callbacks, all exported by $("$envoy" --version 2>&1 | grep -o '[0-9a-f]\{40\}/[0-9.]*')"
