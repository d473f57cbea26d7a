#!/usr/bin/env bash
# Checks the alerting rules and the dashboard with a real Prometheus's
# promtool: the rules parse, their unit tests pass, and every dashboard
# query is valid PromQL. (That every metric they name exists on a running
# issuer and sidecar is checked by the sidecar's e2e test `observability`.)
set -euo pipefail
cd "$(dirname "$0")/.."
promtool check rules observability/prometheus/alerts.yml
(cd observability/prometheus && promtool test rules alerts.test.yml)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - observability/grafana/devmentor-auth.json >"$tmp/dashboard-rules.yml" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard-queries\n    rules:")
for i, p in enumerate(dash["panels"]):
    for t in p.get("targets", []):
        expr = t["expr"].replace("\\", "\\\\").replace('"', '\\"')
        print(f'      - record: dashboard:panel_{i}_{t["refId"]}\n        expr: "{expr}"')
PY
promtool check rules "$tmp/dashboard-rules.yml"
