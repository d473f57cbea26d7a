"""Renders the benchmark Envoy config for one case.

usage: render.py CASE PORT ADMIN_PORT AUTHZ ISSUER_PORT ISSUER_URL
AUTHZ: the ext_authz server's port on 127.0.0.1, or a Unix socket's path
(the module cases leave it unused).
CASE: direct | ext_authz | jwt_cached | jwt_uncached | module | module_nocache
The module cases load libdevmentor_authz.so (ENVOY_DYNAMIC_MODULES_SEARCH_PATH)
with the flags the benchmark's sidecars get.
Every case answers 200 from Envoy itself (direct_response), so only the
authorisation in front of it differs.
"""
import json
import pathlib
import sys

case, port, admin, authz, issuer_port, issuer_url = sys.argv[1:7]

ext_authz = f"""
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              grpc_service:
                envoy_grpc: {{ cluster_name: authz }}
                timeout: 1s"""

jwt_cache = "\n                  jwt_cache_config: { jwt_cache_size: 10000 }" if case == "jwt_cached" else ""
jwt = f"""
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                devmentor:
                  issuer: "{issuer_url}"
                  audiences: [devmentor]
                  forward: true
                  remote_jwks:
                    http_uri: {{ uri: "http://127.0.0.1:{issuer_port}/.well-known/jwks.json", cluster: issuer, timeout: 2s }}
                    cache_duration: 300s{jwt_cache}
              rules:
              - match: {{ prefix: "/" }}
                requires: {{ provider_name: devmentor }}"""

module_args = [
    "--issuer-url", f"http://127.0.0.1:{issuer_port}", "--expected-issuer", issuer_url,
    "--policy", str(pathlib.Path(__file__).resolve().parent.parent / "policy.yaml"),
] + (["--token-cache-capacity", "0"] if case == "module_nocache" else [])
module = f"""
          - name: devmentor.authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{ name: devmentor_authz, do_not_close: true }}
              filter_name: authz
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: '{json.dumps({"args": module_args})}'"""

authz_address = (
    f'{{ pipe: {{ path: "{authz}" }} }}' if authz.startswith("/")
    else f"{{ socket_address: {{ address: 127.0.0.1, port_value: {authz} }} }}"
)

filters = {"direct": "", "ext_authz": ext_authz, "jwt_cached": jwt, "jwt_uncached": jwt,
           "module": module, "module_nocache": module}[case]

print(f"""admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: bench
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          # As in envoy/front-proxy.yaml.tmpl: the judged path is the forwarded path.
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          common_http_protocol_options:
            headers_with_underscores_action: REJECT_REQUEST
          use_remote_address: true
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "ok" }} }}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: authz
    type: STATIC
    connect_timeout: 0.25s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: authz
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {authz_address} }} }}] }}]
  - name: issuer
    type: STATIC
    connect_timeout: 0.25s
    load_assignment:
      cluster_name: issuer
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {issuer_port} }} }} }} }}] }}]
""")
