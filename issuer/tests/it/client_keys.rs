//! `private_key_jwt` (RFC 7523): clients that prove themselves with a key
//! of their own, never a shared secret. Authlib (a client we did not write)
//! signs in with one; the assertions an attacker would try are made by hand.

use auth_types::SigningAlg;
use base64::Engine;
use issuer::domain::keys::{generate_pkcs8, SigningKey};
use issuer::domain::oauth::mint_id_token;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::oauth::REDIRECT;
use crate::oauth::{code_for, oauth_error, page_sign_in, pkce, register_client, run_authlib};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    private_key_jwt_assertions_are_checked_and_work_once,
    authlib_signs_in_with_private_key_jwt,
);

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn client_key(kid: &str) -> (SigningKey, Vec<u8>) {
    key_of(SigningAlg::ES256, kid)
}

fn key_of(alg: SigningAlg, kid: &str) -> (SigningKey, Vec<u8>) {
    let pkcs8 = generate_pkcs8(alg).expect("key");
    let key = SigningKey::from_pkcs8(kid, alg, &pkcs8).expect("load");
    (key, pkcs8)
}

fn jwk(key: &SigningKey) -> Value {
    serde_json::to_value(key.public_jwk()).expect("jwk")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn token_endpoint() -> String {
    format!("{}/auth/oauth2/token", issuer::testing::TEST_ISSUER_URL)
}

/// Good claims for `client`, a fresh `jti` each time.
fn claims(client: &str) -> Value {
    json!({
        "iss": client, "sub": client, "aud": issuer::testing::TEST_ISSUER_URL,
        "iat": now(), "exp": now() + 60,
        "jti": issuer::domain::tokens::random_b64(16).expect("jti"),
    })
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    mint_id_token(key, claims).expect("sign")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Introspection is the cheapest request that needs client authentication.
async fn introspect(t: &TestIssuer, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![("token", "not-a-token")];
    form.extend_from_slice(extra);
    t.http
        .post(t.url("/auth/oauth2/introspect"))
        .form(&form)
        .send()
        .await
        .expect("send")
}

async fn with_assertion(t: &TestIssuer, assertion: &str) -> reqwest::Response {
    introspect(
        t,
        &[
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ],
    )
    .await
}

async fn refused(t: &TestIssuer, assertion: &str, why: &str) {
    let (status, error) = oauth_error(with_assertion(t, assertion).await).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client"),
        "{why}"
    );
}

fn registration(id: &str, jwks: Value) -> Value {
    json!({
        "client_id": id, "name": "Batch", "type": "confidential",
        "redirect_uris": [REDIRECT], "post_logout_redirect_uris": ["https://app.test/bye"],
        "scopes": ["openid", "email"], "first_party": true,
        "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks,
    })
}

async fn private_key_jwt_assertions_are_checked_and_work_once(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let (k1, _) = client_key("k1");

    // Registration takes public keys only, and only for private_key_jwt.
    let mut private = jwk(&k1);
    private["d"] = json!(b64(b"not really a scalar"));
    let mut wrong = vec![
        registration("svc", json!({"keys": [private]})),
        registration("svc", json!({"keys": []})),
        registration("svc", json!({"keys": [{"kty": "EC", "crv": "P-256"}]})),
        registration("svc", json!({"keys": [jwk(&k1), jwk(&k1)]})),
    ];
    let mut no_keys = registration("svc", json!(null));
    no_keys.as_object_mut().expect("object").remove("jwks");
    wrong.push(no_keys);
    let mut public = registration("svc", json!({"keys": [jwk(&k1)]}));
    public["type"] = json!("public");
    wrong.push(public);
    let mut secret_and_keys = registration("svc", json!({"keys": [jwk(&k1)]}));
    secret_and_keys["token_endpoint_auth_method"] = json!("client_secret_basic");
    wrong.push(secret_and_keys);
    for body in wrong {
        let r = t
            .post_auth("/admin/clients", &admin, Some(body.clone()))
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let registered =
        register_client(&t, &admin, registration("svc", json!({"keys": [jwk(&k1)]}))).await;
    assert!(registered.get("client_secret").is_none(), "{registered}");
    assert_eq!(registered["token_endpoint_auth_method"], "private_key_jwt");
    assert!(registered["jwks"]["keys"][0].get("d").is_none());

    // A code exchanged on the strength of an assertion.
    let email = unique_email("pkjwt");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    let p = pkce();
    let code = code_for(&t, &cookies, "svc", &p).await;
    let assertion = sign(&k1, &claims("svc"));
    let r = t
        .http
        .post(t.url("/auth/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &p.verifier),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    let access = body["access_token"].as_str().expect("access").to_string();
    assert_eq!(t.verify(&access).await.client_id, "svc");

    // Once only, on any endpoint.
    refused(&t, &assertion, "a replayed assertion").await;

    // What an attacker holding no key, or an old assertion, could try.
    let with = |patch: Value| {
        let mut c = claims("svc");
        for (k, v) in patch.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let issuer_url = issuer::testing::TEST_ISSUER_URL;
    for (patch, why) in [
        (json!({"aud": "https://elsewhere.test"}), "another audience"),
        // Audience injection: only the issuer identifier, alone.
        (
            json!({"aud": token_endpoint()}),
            "the token endpoint as audience",
        ),
        (
            json!({"aud": [issuer_url, "https://elsewhere.test"]}),
            "a second audience",
        ),
        (json!({"exp": now() - 120}), "expired"),
        (json!({"exp": now() + 7200}), "good for two hours"),
        (
            json!({"iat": now() - 7200, "exp": now() + 60}),
            "made two hours ago",
        ),
        (json!({"iat": now() + 600}), "made in the future"),
        (json!({"nbf": now() + 600}), "not valid yet"),
        (json!({"iss": "attacker"}), "iss is not the client"),
        (json!({"jti": null}), "no jti"),
        (json!({"jti": "j".repeat(300)}), "a jti of 300 bytes"),
        (json!({"exp": null}), "no exp"),
        (json!({"iat": null}), "no iat"),
    ] {
        refused(&t, &sign(&k1, &with(patch)), why).await;
    }
    // The client's own key, but typed as an access token: never an assertion.
    let header = b64(br#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#);
    let input = format!("{header}.{}", b64(claims("svc").to_string().as_bytes()));
    let typed = format!("{input}.{}", b64(&k1.sign(input.as_bytes()).expect("sign")));
    refused(&t, &typed, "typ at+jwt").await;
    let (impostor, _) = client_key("k1");
    refused(
        &t,
        &sign(&impostor, &claims("svc")),
        "same kid, another key",
    )
    .await;
    let (unknown, _) = client_key("k9");
    refused(&t, &sign(&unknown, &claims("svc")), "an unknown kid").await;
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","kid":"k1"}"#),
        b64(claims("svc").to_string().as_bytes())
    );
    refused(&t, &unsigned, "alg none").await;
    let ours = t.login(&email, PASSWORD).await.access;
    refused(&t, &ours, "one of the issuer's own access tokens").await;

    // The issuer alone, as a one-element array, is the same audience.
    let r = with_assertion(&t, &sign(&k1, &with(json!({"aud": [issuer_url]})))).await;
    assert_eq!(r.status(), StatusCode::OK);

    // One method at a time, and the one registered.
    let both = sign(&k1, &claims("svc"));
    let r = introspect(
        &t,
        &[
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &both),
            ("client_secret", "cs_guess"),
        ],
    )
    .await;
    assert_eq!(oauth_error(r).await.1, "invalid_request");
    let r = introspect(
        &t,
        &[
            ("client_assertion_type", "urn:example:other"),
            ("client_assertion", &sign(&k1, &claims("svc"))),
        ],
    )
    .await;
    assert_eq!(oauth_error(r).await.1, "invalid_request");
    let r = introspect(
        &t,
        &[
            ("client_id", "other"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &sign(&k1, &claims("svc"))),
        ],
    )
    .await;
    assert_eq!(oauth_error(r).await.1, "invalid_client");
    let r = introspect(&t, &[("client_id", "svc"), ("client_secret", "cs_guess")]).await;
    assert_eq!(oauth_error(r).await.1, "invalid_client");

    // Rolling a key over: both for a while, then the new one alone.
    let (k2, _) = client_key("k2");
    let put = |jwks: Value| {
        let t = &t;
        let admin = &admin;
        async move {
            t.http
                .put(t.url("/admin/clients/svc/jwks"))
                .bearer_auth(admin)
                .json(&json!({ "jwks": jwks }))
                .send()
                .await
                .expect("send")
        }
    };
    assert_eq!(
        put(json!({"keys": [jwk(&k1), jwk(&k2)]})).await.status(),
        StatusCode::OK
    );
    for key in [&k1, &k2] {
        let r = with_assertion(&t, &sign(key, &claims("svc"))).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(
        put(json!({"keys": [jwk(&k2)]})).await.status(),
        StatusCode::OK
    );
    refused(&t, &sign(&k1, &claims("svc")), "a key taken out of the set").await;
    let r = with_assertion(&t, &sign(&k2, &claims("svc"))).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Authlib's `PrivateKeyJWT` signs the assertions (RS256, its default):
/// the whole relying-party dance of scripts/interop/authlib_rp.py with no
/// secret anywhere.
async fn authlib_signs_in_with_private_key_jwt(backend: Backend) {
    let Some(python) = issuer::testing::required_service("DM_TEST_PYTHON", "Python with Authlib")
    else {
        return;
    };
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let (key, pkcs8) = key_of(SigningAlg::RS256, "py-key-1");
    register_client(
        &t,
        &admin,
        registration("py-pk", json!({"keys": [jwk(&key)]})),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("client-key.pem");
    let body = base64::engine::general_purpose::STANDARD.encode(&pkcs8);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    std::fs::write(&path, pem).expect("write key");
    let secret = format!("pkjwt:{}:py-key-1", path.display());
    run_authlib(&t, &python, "py-pk", secret, "authlib-pkjwt").await;
}
