#!/usr/bin/env python3
"""Offline checks of what ./scripts/check-deploy.sh cannot ask a tool for.

usage: check_deploy.py RENDERED_DIR
RENDERED_DIR holds one file per kustomization (`kubectl kustomize` output):
base.yaml, production.yaml, staging.yaml, istio.yaml.

- Istio resources (CRDs, which kubernetes-validate has no schema for)
  against schemas written from Istio's reference for the fields we use.
- Every ISSUER_*/SIDECAR_* variable a manifest sets is a real flag, every
  container command is a real subcommand, every ConfigMap a pod mounts is
  in the same rendering, every Secret is listed in README.
- The deployment's promises: three issuer replicas with a PDB, an HPA and
  spread; probes on /ready and /health; the authz sidecar a native sidecar on
  loopback; application Services pointing at Envoy; hardened containers.
- The Dockerfile: its stages and targets, a non-root numeric USER, and that
  the binaries need no shared library the runtime image lacks.
"""
import pathlib
import re
import subprocess
import sys

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


def flags(path):
    p = ROOT / path
    files = sorted(p.glob("*.rs")) if p.is_dir() else [p]
    return set(re.findall(r'env = "([A-Z0-9_]+)"', "".join(f.read_text() for f in files)))


ISSUER_ENV = flags("issuer/src/config")
SIDECAR_ENV = flags("sidecar-core/src/config.rs")
SUBCOMMANDS = {"devmentor/issuer": {"serve", "migrate"}, "devmentor/sidecar": {"serve", "check-policy"}}
README = (ROOT / "README.md").read_text()

# --- Istio, from istio.io/latest/docs/reference/config (the fields we use) --
DURATION = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"}
ISTIO_SCHEMAS = {
    "AuthorizationPolicy": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"enum": ["security.istio.io/v1", "security.istio.io/v1beta1"]},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    # Istio's workload selector has matchLabels only; anything
                    # else is ignored and the policy covers the namespace.
                    "selector": {"type": "object", "additionalProperties": False, "required": ["matchLabels"],
                                 "properties": {"matchLabels": {"type": "object", "minProperties": 1}}},
                    "action": {"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
                    "provider": {"type": "object", "required": ["name"], "additionalProperties": False,
                                 "properties": {"name": {"type": "string"}}},
                    "rules": {"type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
                        "from": {"type": "array", "items": {"type": "object", "properties": {"source": {
                            "type": "object", "additionalProperties": False, "properties": {
                                k: {"type": "array", "items": {"type": "string"}} for k in
                                ["principals", "notPrincipals", "namespaces", "notNamespaces", "ipBlocks",
                                 "notIpBlocks", "requestPrincipals", "notRequestPrincipals"]}}}}},
                        "to": {"type": "array", "items": {"type": "object", "properties": {"operation": {
                            "type": "object", "additionalProperties": False, "properties": {
                                k: {"type": "array", "items": {"type": "string"}} for k in
                                ["hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"]}}}}},
                        "when": {"type": "array"}}}},
                },
                # CUSTOM needs its provider.
                "if": {"properties": {"action": {"const": "CUSTOM"}}, "required": ["action"]},
                "then": {"required": ["provider"]},
            },
        },
    },
    "PeerAuthentication": {
        "type": "object",
        "required": ["spec"],
        "properties": {"apiVersion": {"enum": ["security.istio.io/v1", "security.istio.io/v1beta1"]},
                       "spec": {"type": "object", "additionalProperties": False,
                                # Scoped: namespace-wide STRICT would cut off callers outside the mesh.
                                "required": ["selector"], "properties": {
                           "selector": {"type": "object", "additionalProperties": False, "required": ["matchLabels"],
                                        "properties": {"matchLabels": {"type": "object", "minProperties": 1}}},
                           "mtls": {"type": "object", "additionalProperties": False, "properties": {
                               "mode": {"enum": ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]}}},
                           "portLevelMtls": {"type": "object"}}}},
    },
    "IstioOperator": {
        "type": "object",
        "required": ["apiVersion", "spec"],
        "properties": {"apiVersion": {"const": "install.istio.io/v1alpha1"}, "spec": {
            "type": "object", "properties": {"meshConfig": {"type": "object", "properties": {
                "pathNormalization": {"type": "object", "additionalProperties": False, "properties": {
                    "normalization": {"enum": ["DEFAULT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]}}},
                "extensionProviders": {"type": "array", "items": {
                    "type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"},
                        "envoyExtAuthzGrpc": {"type": "object", "required": ["service", "port"],
                                              "additionalProperties": False, "properties": {
                            "service": {"type": "string"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                            "timeout": DURATION, "failOpen": {"type": "boolean"},
                            "statusOnError": {"type": "string", "pattern": "^[1-5][0-9][0-9]$"},
                            "clearRouteCache": {"type": "boolean"}, "includeRequestBodyInCheck": {"type": "object"}}},
                    }}}}}}}},
    },
}


def docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def check_istio(rendered):
    resources = docs(rendered / "istio.yaml") + docs(ROOT / "k8s/istio/mesh-config.yaml")
    providers = set()
    for d in resources:
        schema = ISTIO_SCHEMAS.get(d["kind"])
        if d["apiVersion"].endswith("istio.io/v1") or "istio.io" in d["apiVersion"]:
            if not schema:
                fail("istio", f"no schema for {d['kind']}")
                continue
            try:
                jsonschema.validate(d, schema)
            except jsonschema.ValidationError as e:
                fail(f"istio {d['kind']}/{d.get('metadata', {}).get('name', '-')}", e.message)
        if d["kind"] == "IstioOperator":
            for p in d["spec"]["meshConfig"]["extensionProviders"]:
                providers.add(p["name"])
                grpc = p.get("envoyExtAuthzGrpc", {})
                if grpc.get("failOpen") is not False:
                    fail("istio mesh-config", f"{p['name']}: failOpen must be false (fail closed)")
                svc = grpc.get("service", "").split(".")
                names = {(x["metadata"]["name"], x["metadata"].get("namespace")) for x in resources if x["kind"] == "Service"}
                if (svc[0], svc[1] if len(svc) > 1 else None) not in names:
                    fail("istio mesh-config", f"{p['name']}: service {grpc.get('service')} is not in the rendering")
    for d in resources:
        if d["kind"] == "AuthorizationPolicy" and d["spec"].get("action") == "CUSTOM":
            if d["spec"]["provider"]["name"] not in providers:
                fail("istio", f"AuthorizationPolicy {d['metadata']['name']} names an unknown provider")


# --- manifests ---------------------------------------------------------------
def containers(pod):
    for c in pod.get("initContainers", []):
        yield "init", c
    for c in pod.get("containers", []):
        yield "main", c


def check_rendering(name, items):
    kinds = {}
    for d in items:
        kinds.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    configmaps = set(kinds.get("ConfigMap", {}))
    for dep in kinds.get("Deployment", {}).values():
        where = f"{name} Deployment/{dep['metadata']['name']}"
        pod = dep["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext", {})
        if any("secret" in v for v in pod.get("volumes", [])) and "fsGroup" not in pod_sc:
            fail(where, "mounts Secrets but sets no fsGroup: a non-root container cannot read a 0400 file")
        for vol in pod.get("volumes", []):
            if "configMap" in vol and vol["configMap"]["name"] not in configmaps:
                fail(where, f"mounts ConfigMap {vol['configMap']['name']}, which the rendering lacks")
            if "secret" in vol and f"`{vol['secret']['secretName']}`" not in README:
                fail(where, f"Secret {vol['secret']['secretName']} is not listed in README")
        for kind, c in containers(pod):
            cw = f"{where} container {c['name']}"
            for e in c.get("env", []):
                n = e["name"]
                if n.startswith("ISSUER_") and n not in ISSUER_ENV:
                    fail(cw, f"{n} is not an issuer setting")
                if n.startswith("SIDECAR_") and n not in SIDECAR_ENV:
                    fail(cw, f"{n} is not a sidecar setting")
                if n == "ISSUER_TRUSTED_PROXIES":
                    for net in e.get("value", "").split(","):
                        if "/" in net and int(net.rsplit("/", 1)[1]) < 16:
                            fail(cw, f"trusted proxies {net}: too broad, application pods would be in it")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and f"`{ref['name']}`" not in README:
                    fail(cw, f"Secret {ref['name']} is not listed in README")
            image = c["image"].split(":")[0]
            if image in SUBCOMMANDS and c.get("args", [None])[0] not in SUBCOMMANDS[image]:
                fail(cw, f"args {c.get('args')} do not start with a subcommand of {image}")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(cw, "allowPrivilegeEscalation must be false")
            if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
                fail(cw, "must run as non-root")
            if name != "istio" and not sc.get("readOnlyRootFilesystem"):
                fail(cw, "root filesystem must be read-only")
            if name != "istio" and "memory" not in c.get("resources", {}).get("limits", {}):
                fail(cw, "needs a memory limit")
            if image == "devmentor/sidecar":
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                if name != "istio":
                    if kind != "init" or c.get("restartPolicy") != "Always":
                        fail(cw, "the authz sidecar must be a native sidecar (init container, restartPolicy Always)")
                    if not env.get("SIDECAR_LISTEN", "").startswith("127.0.0.1:"):
                        fail(cw, "the Check port must listen on loopback only")
                if "SIDECAR_EXPECTED_ISSUER" not in env or "SIDECAR_FEED_TOKEN_FILE" not in env:
                    fail(cw, "needs the expected issuer and the feed token")
        if name != "istio" and dep["metadata"]["name"] != "devmentor-issuer":
            envoy = [c for c in pod["containers"] if c["image"].startswith("envoyproxy/envoy")]
            app = [c for c in pod["containers"] if c["name"] == "app"]
            if not envoy or not app:
                fail(where, "an application pod needs Envoy and the app")
            elif app[0].get("ports"):
                fail(where, "the application must not expose a port: Envoy is the way in")
            elif not next((e.get("value", "") for e in app[0].get("env", []) if e["name"] == "LISTEN"), "").startswith("127.0.0.1:"):
                fail(where, "the application must listen on loopback (LISTEN=127.0.0.1:port)")

    issuer = kinds.get("Deployment", {}).get("devmentor-issuer")
    if issuer is None:
        fail(name, "no issuer Deployment")
        return
    spec = issuer["spec"]
    if "replicas" in spec:
        fail(name, "the issuer's replica count belongs to its HPA (an apply would reset it)")
    pod = spec["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == "issuer")
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/ready":
        fail(name, "issuer readiness must probe /ready")
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health":
        fail(name, "issuer liveness must probe /health")
    spread = {t["topologyKey"] for t in pod.get("topologySpreadConstraints", [])}
    if "kubernetes.io/hostname" not in spread:
        fail(name, "issuer replicas must spread over nodes")
    labels = spec["selector"]["matchLabels"]
    pdbs = [p for p in kinds.get("PodDisruptionBudget", {}).values() if p["spec"]["selector"].get("matchLabels") == labels]
    if not pdbs or pdbs[0]["spec"].get("minAvailable", 0) < 2:
        fail(name, "the issuer needs a PodDisruptionBudget keeping two replicas")
    hpas = [h for h in kinds.get("HorizontalPodAutoscaler", {}).values() if h["spec"]["scaleTargetRef"]["name"] == "devmentor-issuer"]
    if not hpas or hpas[0]["spec"].get("minReplicas", 0) < 3:
        fail(name, "the issuer needs an HPA that never goes below 3")
    policies = kinds.get("NetworkPolicy", {})
    if "devmentor-issuer" not in policies:
        fail(name, "no NetworkPolicy for the issuer")
    if name != "istio":
        for app in ("ai-gateway", "memory-service"):
            svc = kinds.get("Service", {}).get(app)
            if svc is None:
                fail(name, f"no Service {app}")
            elif [p["targetPort"] for p in svc["spec"]["ports"]] != ["http"]:
                fail(name, f"Service {app} must target Envoy's port")
        np = policies.get("devmentor-apps")
        if np is None:
            fail(name, "no NetworkPolicy for the application pods")
        else:
            selected = np["spec"]["podSelector"].get("matchLabels", {})
            for dep in kinds.get("Deployment", {}).values():
                labels = dep["spec"]["template"]["metadata"]["labels"]
                if dep["metadata"]["name"] in ("ai-gateway", "memory-service") and not selected.items() <= labels.items():
                    fail(name, f"NetworkPolicy devmentor-apps does not select {dep['metadata']['name']}")
            ports = {p["port"] for r in np["spec"]["ingress"] for p in r["ports"]}
            if ports != {8080, 9002}:
                fail(name, f"application pods open {sorted(ports)}, expected Envoy and the sidecar's admin only")
            for r in np["spec"]["ingress"]:
                for src in r.get("from", []):
                    if "namespaceSelector" not in src or "podSelector" not in src:
                        fail(name, "devmentor-apps admits a source by namespace or pod alone")


# --- Dockerfile --------------------------------------------------------------
# The shared libraries distroless cc-debian12 ships (glibc, libgcc, OpenSSL 3).
RUNTIME_LIBS = {"libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2",
                "libssl.so.3", "libcrypto.so.3", "libpthread.so.0", "libdl.so.2", "librt.so.1"}


def check_dockerfile(binaries):
    text = (ROOT / "Dockerfile").read_text()
    stages, current, final = {}, None, {}
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.fullmatch(r"(\S+) AS (\S+)", rest, re.I)
            if not m:
                fail("Dockerfile", f"every stage is named: {line}")
                continue
            image, current = m.groups()
            if ":" not in image.split("/")[-1] and image not in stages:
                fail("Dockerfile", f"{image}: pin a tag")
            stages[current] = {"from": image, "user": None, "entry": None, "copies": []}
        elif current is None:
            fail("Dockerfile", f"instruction before FROM: {line}")
        elif word == "USER":
            stages[current]["user"] = rest
        elif word == "ENTRYPOINT":
            stages[current]["entry"] = rest
        elif word == "COPY":
            m = re.match(r"--from=(\S+) \S+ (\S+)", rest)
            if m:
                if m.group(1) not in stages:
                    fail("Dockerfile", f"COPY --from={m.group(1)}: no such stage before it")
                stages[current]["copies"].append(m.group(2))
        elif word == "ADD" and re.search(r"https?://", rest):
            fail("Dockerfile", "ADD of a URL: fetch nothing unpinned")
    for target in ("issuer", "sidecar"):
        s = stages.get(target)
        if not s:
            fail("Dockerfile", f"no target {target}")
            continue
        user = (s["user"] or "").split(":")[0]
        if not user.isdigit() or int(user) == 0:
            fail("Dockerfile", f"{target}: USER must be a numeric non-root uid, got {s['user']}")
        binary = f"/usr/local/bin/{target}"
        if s["entry"] != f'["{binary}"]' or binary not in s["copies"]:
            fail("Dockerfile", f"{target}: ENTRYPOINT must be the copied {binary}")
        if "distroless" not in s["from"]:
            fail("Dockerfile", f"{target}: the runtime image is distroless")
    if "--locked" not in text:
        fail("Dockerfile", "cargo build must be --locked")
    for binary in binaries:
        out = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
        needed = set(re.findall(r"Shared library: \[([^\]]+)\]", out))
        missing = needed - RUNTIME_LIBS
        if missing:
            fail("Dockerfile", f"{binary} needs {sorted(missing)}, which the runtime image does not ship")


def main():
    rendered = pathlib.Path(sys.argv[1])
    for name in ("base", "production", "staging", "istio"):
        check_rendering(name, docs(rendered / f"{name}.yaml"))
    check_istio(rendered)
    check_dockerfile(sys.argv[2:])
    for e in errors:
        print(f"check_deploy: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print("check_deploy: manifests, Istio resources and Dockerfile consistent")


if __name__ == "__main__":
    main()
