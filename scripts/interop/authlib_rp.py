#!/usr/bin/env python3
"""An OpenID Connect relying party built on Authlib (a client we did not
write), against the running issuer: discovery, code + PKCE, ID-token
validation (signature, nonce, at_hash, audience, expiry), userinfo,
refresh, revocation (RFC 7009) and RP-initiated logout.

The "browser" is a signed-in cookie header the test passes in. Requests to
the issuer's public URL (https://issuer.test) go to the test server: a
transport shim, nothing more.

Usage: authlib_rp.py REAL_BASE ISSUER CLIENT_ID SECRET COOKIES REDIRECT POST_LOGOUT [EDGE_URL]
With EDGE_URL (a route behind Envoy whose rule names `scopes: [notes:read]`),
the RP also asks for notes:read and checks the edge: its access token
passes there, and is refused within two seconds of its revocation and of
the RP-initiated logout.
SECRET is the client secret (client_secret_basic), or pkjwt:KEY_PEM_FILE:KID
for private_key_jwt (RFC 7523): Authlib signs the client assertions with
that RS256 key (a PEM file), at the token and revocation endpoints.
Prints one line per step; exits 1 on the first failure.
"""
import secrets
import sys
import time
from urllib.parse import parse_qs, urlparse

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.jose import JsonWebKey, jwt
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.core import CodeIDToken

real, issuer, client_id, secret, cookies, redirect, post_logout = sys.argv[1:8]
edge_url = sys.argv[8] if len(sys.argv) > 8 else None
scope = "openid email notes:read" if edge_url else "openid email"


class ToTestServer(requests.adapters.HTTPAdapter):
    def send(self, request, **kwargs):
        request.url = request.url.replace(issuer, real, 1)
        return super().send(request, **kwargs)


def session(s):
    s.mount(issuer, ToTestServer())
    return s


def check(ok, what):
    if not ok:
        print(f"FAIL {what}")
        sys.exit(1)
    print(f"ok {what}")


plain = session(requests.Session())
meta = plain.get(f"{issuer}/.well-known/openid-configuration").json()
check(meta["issuer"] == issuer, "discovery: issuer")
check("S256" in meta["code_challenge_methods_supported"], "discovery: S256")
jwks = JsonWebKey.import_key_set(plain.get(meta["jwks_uri"]).json())


def client():
    """The relying party's OAuth session, authenticating as registered."""
    if secret.startswith("pkjwt:"):
        _, path, kid = secret.split(":", 2)
        # The PEM itself: Authlib imports it (with authlib.jose or joserfc,
        # by version) when it signs.
        with open(path) as f:
            key = f.read()
        rp = OAuth2Session(
            client_id,
            key,
            scope=scope,
            redirect_uri=redirect,
            code_challenge_method="S256",
            token_endpoint_auth_method="private_key_jwt",
            revocation_endpoint_auth_method="private_key_jwt",
        )
        # Authlib puts its first argument in `aud`: the issuer identifier,
        # the only audience the issuer takes (no audience injection).
        rp.register_client_auth_method(
            PrivateKeyJWT(meta["issuer"], alg="RS256", headers={"kid": kid})
        )
        return session(rp)
    return session(
        OAuth2Session(
            client_id,
            secret,
            scope=scope,
            redirect_uri=redirect,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",
        )
    )


def edge(access_token):
    """The edge's answer to the token (Envoy, then the sidecar or module)."""
    r = requests.get(edge_url, headers={"authorization": f"Bearer {access_token}"}, timeout=5)
    return r.status_code, r


def refused_at_edge(access_token, what):
    """Polls until the edge refuses the token (the feed's lag), at most 2 s."""
    if not edge_url:
        return
    start = time.monotonic()
    while edge(access_token)[0] != 401:
        check(time.monotonic() - start < 2, what)
        time.sleep(0.01)
    check(True, f"{what} (after {1000 * (time.monotonic() - start):.0f} ms)")


def sign_in():
    """One authorization code flow; the tokens and the nonce."""
    rp = client()
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = rp.create_authorization_url(
        meta["authorization_endpoint"], nonce=nonce, code_verifier=verifier
    )
    r = plain.get(
        url,
        headers={"cookie": cookies, "sec-fetch-site": "same-origin"},
        allow_redirects=False,
    )
    check(r.status_code == 303, f"authorize answers a redirect ({r.status_code})")
    back = r.headers["location"]
    q = parse_qs(urlparse(back).query)
    check(q.get("iss") == [issuer], "authorization response carries iss (RFC 9207)")
    token = rp.fetch_token(
        meta["token_endpoint"], authorization_response=back, code_verifier=verifier
    )
    claims = jwt.decode(
        token["id_token"],
        jwks,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": issuer}},
        claims_params={
            "nonce": nonce,
            "client_id": client_id,
            "access_token": token["access_token"],
        },
    )
    claims.validate()
    check(claims["aud"] == client_id, "ID token valid (signature, nonce, at_hash, aud, exp)")
    return rp, token, claims


rp, token, claims = sign_in()
info = rp.get(meta["userinfo_endpoint"]).json()
check(info.get("sub") == claims["sub"] and "@" in info.get("email", ""), "userinfo")
refreshed = rp.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
check(refreshed["access_token"] != token["access_token"], "refresh")
if edge_url:
    status, answer = edge(refreshed["access_token"])
    check(status == 200, f"the edge lets the app's token through ({status})")
    check(answer.json()["headers"].get("x-client-id") == [client_id], "the upstream learns the client")
r = rp.revoke_token(
    meta["revocation_endpoint"],
    token=refreshed["refresh_token"],
    token_type_hint="refresh_token",
)
check(r.status_code == 200, f"revocation answers 200 ({r.status_code} {r.text[:200]})")
try:
    rp.refresh_token(meta["token_endpoint"], refresh_token=refreshed["refresh_token"])
    check(False, "a revoked refresh token is refused")
except OAuthError as e:
    check(e.error == "invalid_grant", "a revoked refresh token is refused")
refused_at_edge(refreshed["access_token"], "the revoked grant's access token is refused at the edge")

rp, token, claims = sign_in()
r = plain.get(
    meta["end_session_endpoint"],
    params={
        "id_token_hint": token["id_token"],
        "post_logout_redirect_uri": post_logout,
        "state": "bye",
    },
    allow_redirects=False,
)
check(
    r.status_code == 303 and r.headers["location"] == f"{post_logout}?state=bye",
    "RP-initiated logout returns to the registered URI with state",
)
try:
    rp.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    check(False, "the logged-out session's refresh token is refused")
except OAuthError as e:
    check(e.error == "invalid_grant", "the logged-out session's refresh token is refused")
refused_at_edge(token["access_token"], "the logged-out session's access token is refused at the edge")
print("authlib relying party: all steps passed")
