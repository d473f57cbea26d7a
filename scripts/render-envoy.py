#!/usr/bin/env python3
"""Renders envoy/front-proxy.yaml.tmpl, the one template behind every Envoy
config the project ships (demo, tests, Kubernetes pods).

usage: render-envoy.py [--profile NAME] [--set KEY=VALUE ...] [--with BLOCK ...]
                       [--without BLOCK ...] [--authz ext_authz|module]
                       [--module-arg ARG ...] [--output FILE | --check FILE]

Addresses (SIDECAR, ISSUER, AI_GATEWAY, MEMORY, OTEL) are HOST:PORT or
unix:/PATH (sidecar only). An IP literal becomes a STATIC cluster, a name a
STRICT_DNS one. KEY_PORT=N is shorthand for KEY=127.0.0.1:N. Blocks: issuer,
ai, memory (routes and their clusters), tracing (Envoy's OpenTelemetry
tracer; on by default when OTEL is set), sample_app (a second listener on
SAMPLE_APP_PORT where Envoy's OAuth2 filter signs people in with the issuer
as client SAMPLE_CLIENT_ID, sending them to AUTHORIZE_URL; the client
secret and the cookie key are read from SAMPLE_SECRET_FILE and
SAMPLE_HMAC_FILE; needs ext_authz, issuer and memory).
--authz module decides inside Envoy with the dynamic module
(libdevmentor_authz.so, found through ENVOY_DYNAMIC_MODULES_SEARCH_PATH)
instead of calling the sidecar; --module-arg gives it `sidecar serve`'s
flags (repeat it: --module-arg=--issuer-url --module-arg=http://...).
--check compares the rendering with FILE and fails if they differ (the
committed Kubernetes configs must match the template).
"""
import argparse
import json
import ipaddress
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "envoy" / "front-proxy.yaml.tmpl"

DEMO = {
    "ENVOY_PORT": "8080",
    "ENVOY_ADMIN_PORT": "9901",
    "SIDECAR": "127.0.0.1:9001",
    "ISSUER": "127.0.0.1:3002",
    "AI_GATEWAY": "127.0.0.1:3001",
    "MEMORY": "127.0.0.1:3003",
    "SERVICE_NAME": "envoy",
    "TRACE_SAMPLE_PERCENT": "100",
    "XFF_TRUSTED_HOPS": "0",
}
# In a pod, Envoy fronts that pod's application only; the sidecar and the
# application listen on loopback, so nothing else in the pod network can
# reach them around Envoy. Sign-in goes to the issuer through the ingress.
POD = {
    "ENVOY_PORT": "8080",
    "ENVOY_ADMIN_PORT": "9901",
    "SIDECAR": "127.0.0.1:9001",
    "OTEL": "otel-collector.observability.svc.cluster.local:4317",
    "TRACE_SAMPLE_PERCENT": "10",
    "XFF_TRUSTED_HOPS": "1",
}
PROFILES = {
    "demo": (DEMO, {"issuer", "ai", "memory", "ext_authz"}),
    "k8s-ai-gateway": (
        dict(POD, AI_GATEWAY="127.0.0.1:3001", SERVICE_NAME="ai-gateway-envoy"),
        {"ai", "ext_authz"},
    ),
    "k8s-memory-service": (
        dict(POD, MEMORY="127.0.0.1:3003", SERVICE_NAME="memory-service-envoy"),
        {"memory", "ext_authz"},
    ),
}
ADDRESSES = ["SIDECAR", "ISSUER", "AI_GATEWAY", "MEMORY", "OTEL"]
NUMBERS = ["ENVOY_PORT", "ENVOY_ADMIN_PORT", "TRACE_SAMPLE_PERCENT", "XFF_TRUSTED_HOPS"]
# The sample app's values, each with what it may hold (they land in YAML).
SAMPLE = {
    "SAMPLE_APP_PORT": r"[0-9]{1,5}",
    "SAMPLE_CLIENT_ID": r"[a-z0-9-]{3,64}",
    "AUTHORIZE_URL": r"https?://[A-Za-z0-9.:\[\]-]+/[A-Za-z0-9/._-]*",
    "SAMPLE_SECRET_FILE": r"/[A-Za-z0-9/._-]+",
    "SAMPLE_HMAC_FILE": r"/[A-Za-z0-9/._-]+",
}
KEYS = set(ADDRESSES) | set(NUMBERS) | {"SERVICE_NAME"} | set(SAMPLE)
BLOCK_OF = {"ISSUER": "issuer", "AI_GATEWAY": "ai", "MEMORY": "memory", "OTEL": "tracing"}


def fail(message):
    sys.exit(f"render-envoy: {message}")


def address(key, value):
    """(cluster type, Envoy address) for HOST:PORT or unix:/PATH."""
    if value.startswith("unix:"):
        path = value[len("unix:"):]
        if key != "SIDECAR" or not path.startswith("/") or '"' in path:
            fail(f"{key}: a Unix socket needs an absolute path, and only the sidecar has one")
        return "STATIC", f'{{ pipe: {{ path: "{path}" }} }}'
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        fail(f"{key}: expected HOST:PORT, got {value!r}")
    if not re.fullmatch(r"[A-Za-z0-9.:-]+", host):
        fail(f"{key}: {host!r} is not a host name or IP address")
    try:
        ipaddress.ip_address(host)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"
    return kind, f"{{ socket_address: {{ address: {host}, port_value: {int(port)} }} }}"


def render(values, blocks):
    lines, keep, stack = [], True, []
    for line in TEMPLATE.read_text().splitlines(keepends=True):
        opening = re.fullmatch(r"\s*# \{\{#(\w+)\}\}\s*", line)
        closing = re.fullmatch(r"\s*# \{\{/(\w+)\}\}\s*", line)
        if opening:
            stack.append((opening.group(1), keep))
            keep = keep and opening.group(1) in blocks
            continue
        if closing:
            if not stack or stack[-1][0] != closing.group(1):
                fail(f"template: unbalanced block {closing.group(1)}")
            keep = stack.pop()[1]
            continue
        if keep:
            lines.append(line)
    if stack:
        fail(f"template: block {stack[-1][0]} is not closed")
    text = "".join(lines)

    def value(match):
        name = match.group(1)
        if name not in values:
            fail(f"no value for {name} (set it with --set {name}=...)")
        return values[name]

    return re.sub(r"\{\{([A-Z_]+)\}\}", value, text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="demo")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--with", dest="on", action="append", default=[], metavar="BLOCK")
    parser.add_argument("--without", dest="off", action="append", default=[], metavar="BLOCK")
    parser.add_argument("--authz", choices=["ext_authz", "module"], default="ext_authz")
    parser.add_argument("--module-arg", action="append", default=[], metavar="ARG")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--output")
    out.add_argument("--check")
    args = parser.parse_args()

    base, blocks = PROFILES[args.profile]
    values, blocks = dict(base), set(blocks)
    for item in args.set:
        key, sep, val = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_]+", key):
            fail(f"--set expects KEY=VALUE, got {item!r}")
        if key.endswith("_PORT") and key[: -len("_PORT")] in ADDRESSES:
            key, val = key[: -len("_PORT")], f"127.0.0.1:{val}"
        if key not in KEYS:
            fail(f"unknown key {key} (one of {', '.join(sorted(KEYS))})")
        values[key] = val
    if "OTEL" in values and "tracing" not in args.off:
        blocks.add("tracing")
    blocks |= set(args.on)
    blocks -= set(args.off)
    if args.authz == "module":
        blocks = (blocks - {"ext_authz"}) | {"module"}
        # A single-quoted YAML scalar: only ' needs escaping (as '').
        values["MODULE_CONFIG"] = json.dumps({"args": args.module_arg}).replace("'", "''")
    elif args.module_arg:
        fail("--module-arg needs --authz module")
    for key in ADDRESSES:
        if key in values:
            values[f"{key}_TYPE"], values[f"{key}_ADDRESS"] = address(key, values[key])
        elif (key == "SIDECAR" and "ext_authz" in blocks) or BLOCK_OF.get(key) in blocks:
            fail(f"{key} is needed (--set {key}=HOST:PORT)")
    for key in NUMBERS:
        if not values.get(key, "").isdigit():
            fail(f"{key} must be a number")
    if "sample_app" in blocks:
        if not {"ext_authz", "issuer", "memory"} <= blocks:
            fail("sample_app needs the issuer and memory blocks and --authz ext_authz")
        for key, pattern in SAMPLE.items():
            if not re.fullmatch(pattern, values.get(key, "")):
                fail(f"{key} is needed for sample_app (--set {key}=...), matching {pattern}")
    # Values land in YAML unquoted: nothing that could start a new node.
    if not re.fullmatch(r"[A-Za-z0-9._-]+", values.get("SERVICE_NAME", "")):
        fail("SERVICE_NAME: letters, digits, '.', '_' and '-' only")
    text = render(values, blocks)
    if args.check:
        current = pathlib.Path(args.check)
        if not current.exists() or current.read_text() != text:
            fail(f"{args.check} is not what the template renders; run: "
                 f"scripts/render-envoy.py --profile {args.profile} --output {args.check}")
    elif args.output:
        pathlib.Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
