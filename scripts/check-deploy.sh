#!/usr/bin/env bash
# Offline checks of everything shipped for deployment (README "Deploying",
# "Validated offline"): the Envoy configs rendered from the one template,
# the kustomizations against the Kubernetes schemas, Istio's resources, the
# manifests against the binaries' real flags, the Dockerfile, YAML lint and
# the shipped policy. Needs the test venv (TOOLS_PYTHON), Envoy (ENVOY_BIN),
# kubectl and the debug binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${TOOLS_PYTHON:-.tools/venv/bin/python}
envoy=${ENVOY_BIN:-.tools/venv/bin/envoy}
bin=$(dirname "$py")
command -v kubectl >/dev/null || { echo "check-deploy: kubectl (with kustomize) is required" >&2; exit 1; }
cargo build --locked -q --bin issuer --bin sidecar
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for app in ai-gateway memory-service; do
  python3 scripts/render-envoy.py --profile "k8s-$app" --check "k8s/base/apps/$app/envoy.yaml"
  "$envoy" --mode validate --disable-hot-restart -l error -c "k8s/base/apps/$app/envoy.yaml" >/dev/null
done
scripts/render-envoy.sh >"$tmp/demo-envoy.yaml"
"$envoy" --mode validate --disable-hot-restart -l error -c "$tmp/demo-envoy.yaml" >/dev/null

for k in base overlays/production overlays/staging istio; do
  out="$tmp/$(basename "$k").yaml"
  kubectl kustomize "k8s/$k" >"$out"
  for version in 1.29.0 1.32.0; do
    # Istio's CRDs have no schema there (warnings); check_deploy.py does them.
    if ! "$bin/kubernetes-validate" -k "$version" --strict --quiet --no-warn "$out"; then
      echo "check-deploy: k8s/$k does not validate against Kubernetes $version" >&2
      exit 1
    fi
  done
done
# The validator must refuse a misspelt field, or the checks above prove nothing.
sed 's/readOnlyRootFilesystem: true/readOnlyRootFileSystem: true/' "$tmp/production.yaml" >"$tmp/typo.yaml"
if "$bin/kubernetes-validate" -k 1.32.0 --strict --quiet --no-warn "$tmp/typo.yaml" >/dev/null 2>&1; then
  echo "check-deploy: kubernetes-validate accepted a misspelt field" >&2
  exit 1
fi

"$py" scripts/check_deploy.py "$tmp" target/debug/issuer target/debug/sidecar
"$bin/yamllint" -c .yamllint.yaml --strict k8s envoy observability
target/debug/sidecar check-policy k8s/base/policy/policy.yaml
target/debug/sidecar check-policy envoy/policy.yaml
echo "check-deploy: ok"
