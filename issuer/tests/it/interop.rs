//! Tokens from the running issuer, verified by an independent JWT
//! implementation (PyJWT's PyJWKClient) fetching our JWKS over HTTP.

use std::process::Command;
use std::sync::Arc;

use auth_types::SigningAlg;
use issuer::domain::clock::SystemClock;
use issuer::testing::{required_service, TEST_AUDIENCE, TEST_ISSUER_URL};

use crate::support::*;

fn pyjwt(
    python: &str,
    jwks_url: &str,
    issuer: &str,
    audience: &str,
    token: &str,
) -> (bool, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/interop/pyjwt_verify.py"
    );
    let out = Command::new(python)
        .args([script, jwks_url, issuer, audience, token])
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_our_tokens_for_every_algorithm() {
    let Some(python) = required_service("DM_TEST_PYTHON", "Python with PyJWT") else {
        return;
    };
    for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
        let t = start_with(Backend::Sqlite, Arc::new(SystemClock), |a| {
            a.keys.signing_alg = alg
        })
        .await
        .expect("sqlite always available");
        let email = unique_email("interop");
        t.register(&email, PASSWORD).await;
        let tokens = t.login(&email, PASSWORD).await;
        let jwks = t.url("/.well-known/jwks.json");
        let token = tokens.access.clone();
        let py = python.clone();
        let (ok, out) = tokio::task::spawn_blocking(move || {
            pyjwt(&py, &jwks, TEST_ISSUER_URL, TEST_AUDIENCE, &token)
        })
        .await
        .expect("join");
        assert!(ok, "{alg}: {out}");
        assert!(out.contains(&format!("alg={alg}")), "{out}");

        // The same verifier must refuse: a tampered payload, another audience, another issuer.
        let mut parts: Vec<String> = tokens.access.split('.').map(str::to_string).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&auth_types::jws::b64url_decode(&parts[1]).expect("b64"))
                .expect("json");
        claims["roles"] = serde_json::json!(["admin"]);
        parts[1] = auth_types::jws::b64url_encode(&serde_json::to_vec(&claims).expect("json"));
        let tampered = parts.join(".");
        let cases = [
            (tampered, TEST_ISSUER_URL, TEST_AUDIENCE, "tampered"),
            (
                tokens.access.clone(),
                TEST_ISSUER_URL,
                "someone-else",
                "audience",
            ),
            (
                tokens.access.clone(),
                "https://evil.test",
                TEST_AUDIENCE,
                "issuer",
            ),
        ];
        for (token, iss, aud, what) in cases {
            let (py, jwks) = (python.clone(), t.url("/.well-known/jwks.json"));
            let (iss, aud) = (iss.to_string(), aud.to_string());
            let (ok, out) =
                tokio::task::spawn_blocking(move || pyjwt(&py, &jwks, &iss, &aud, &token))
                    .await
                    .expect("join");
            assert!(!ok, "{alg} {what} must be rejected: {out}");
            assert!(out.contains("rejected"), "{out}");
        }
    }
}
