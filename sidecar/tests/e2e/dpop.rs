//! DPoP at the edge (RFC 9449), through Envoy with the sidecar and with the
//! module: a token bound to a key passes only under the DPoP scheme with a
//! fresh proof by that key for this method and URL, once; as a Bearer
//! token, with a proof for another URL, by another key, or replayed, it is
//! refused (401 with a DPoP challenge); a `dpop: required` rule refuses an
//! unbound token.

use issuer::domain::keys::SigningKey;
use issuer::testing::{dpop_key, dpop_proof, unix_now};
use serde_json::{json, Value};

use crate::support::*;

/// `dpop: required`, with `scopes: [notes:read]` (envoy/policy.yaml).
const PRIVATE: &str = "/memory/notes/private/1";
/// `scopes: [notes:read]` alone.
const NOTES: &str = "/memory/notes/1";

fn key() -> SigningKey {
    dpop_key(auth_types::SigningAlg::ES256)
}

async fn get(stack: &Stack, path: &str, auth: &str, proof: Option<&str>) -> (u16, String, Value) {
    let mut req = stack
        .http
        .get(stack.url(path))
        .header("authorization", auth);
    if let Some(p) = proof {
        req = req.header("dpop", p);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, challenge, r.json().await.unwrap_or_default())
}

async fn a_stolen_bound_token_is_useless_at_the_edge(front: Front) {
    let Some(stack) = Stack::start_front(front, |_| {}, |_| {}).await else {
        return;
    };
    // A personal access token exchanged with a proof: a bound token.
    let session = token(&stack.login(&unique_email("dpop")).await);
    let pat = stack
        .personal_token(&session, json!({"name": "cli", "scope": "notes:read"}))
        .await["token"]
        .as_str()
        .expect("token")
        .to_string();
    let exchange = |proof: Option<String>| {
        let (stack, pat) = (&stack, pat.clone());
        async move {
            let v = stack.exchange_pat(&pat, proof).await;
            (
                token(&v),
                v["token_type"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    let key = key();
    let token_url = format!(
        "{}/auth/oauth2/token",
        stack.issuer().state.settings.issuer_url
    );
    let (bound, kind) = exchange(Some(dpop_proof(
        &key,
        "POST",
        &token_url,
        None,
        unix_now(),
        "t-1",
    )))
    .await;
    assert_eq!(kind, "DPoP");
    let (unbound, kind) = exchange(None).await;
    assert_eq!(kind, "Bearer");

    let scheme = format!("DPoP {bound}");
    let proof = |path: &str, jti: &str| {
        dpop_proof(&key, "GET", &stack.url(path), Some(&bound), unix_now(), jti)
    };
    // With its proof: through, on the rule that requires DPoP and on one
    // that does not.
    let first = proof(PRIVATE, "p-1");
    let (status, _, _) = get(&stack, PRIVATE, &scheme, Some(&first)).await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&stack, NOTES, &scheme, Some(&proof(NOTES, "p-2"))).await;
    assert_eq!(status, 200);

    // A stolen copy: as Bearer, without a proof, with a proof replayed, for
    // another URL or method, or by another key, or for another token.
    let other = key_other();
    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("as Bearer", format!("Bearer {bound}"), None),
        (
            "as Bearer with a proof",
            format!("Bearer {bound}"),
            Some(proof(PRIVATE, "p-3")),
        ),
        ("no proof", scheme.clone(), None),
        ("replayed proof", scheme.clone(), Some(first.clone())),
        (
            "another URL's proof",
            scheme.clone(),
            Some(proof(NOTES, "p-4")),
        ),
        (
            "another method's proof",
            scheme.clone(),
            Some(dpop_proof(
                &key,
                "POST",
                &stack.url(PRIVATE),
                Some(&bound),
                unix_now(),
                "p-5",
            )),
        ),
        (
            "another key's proof",
            scheme.clone(),
            Some(dpop_proof(
                &other,
                "GET",
                &stack.url(PRIVATE),
                Some(&bound),
                unix_now(),
                "p-6",
            )),
        ),
        (
            "a proof for another token",
            scheme.clone(),
            Some(dpop_proof(
                &key,
                "GET",
                &stack.url(PRIVATE),
                Some(&unbound),
                unix_now(),
                "p-7",
            )),
        ),
        (
            "an old proof",
            scheme.clone(),
            Some(dpop_proof(
                &key,
                "GET",
                &stack.url(PRIVATE),
                Some(&bound),
                unix_now() - 300,
                "p-8",
            )),
        ),
    ];
    for (label, auth, proof) in cases {
        let (status, challenge, body) = get(&stack, PRIVATE, &auth, proof.as_deref()).await;
        assert_eq!(status, 401, "{label}");
        assert_eq!(body["error"], "invalid_dpop_proof", "{label}");
        assert!(challenge.starts_with("DPoP "), "{label}: {challenge}");
    }

    // An unbound token: refused where the rule requires DPoP, taken
    // elsewhere; under the DPoP scheme it is refused everywhere.
    let (status, challenge, body) = get(&stack, PRIVATE, &format!("Bearer {unbound}"), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("dpop_required"))
    );
    assert!(challenge.starts_with("DPoP algs="), "{challenge}");
    let (status, _, _) = get(&stack, NOTES, &format!("Bearer {unbound}"), None).await;
    assert_eq!(status, 200);
    let (status, _, _) = get(
        &stack,
        NOTES,
        &format!("DPoP {unbound}"),
        Some(&dpop_proof(
            &key,
            "GET",
            &stack.url(NOTES),
            Some(&unbound),
            unix_now(),
            "p-9",
        )),
    )
    .await;
    assert_eq!(status, 401);
}

fn key_other() -> SigningKey {
    dpop_key(auth_types::SigningAlg::EdDSA)
}

crate::both_fronts!(a_stolen_bound_token_is_useless_at_the_edge);

/// With `--public-origin`, proofs name the origin clients address (behind
/// a TLS-terminating load balancer the proxy sees plain http and another
/// Host): a proof for it passes; one for the address the proxy saw, or
/// for another host, does not.
async fn proofs_name_the_public_origin_when_one_is_set(front: Front) {
    const ORIGIN: &str = "https://mesh.example";
    let Some(stack) =
        Stack::start_front(front, |_| {}, |s| s.public_origin = Some(ORIGIN.into())).await
    else {
        return;
    };
    let session = token(&stack.login(&unique_email("origin")).await);
    let pat = stack
        .personal_token(&session, json!({"name": "cli", "scope": "notes:read"}))
        .await["token"]
        .as_str()
        .expect("token")
        .to_string();
    let key = key();
    let token_url = format!(
        "{}/auth/oauth2/token",
        stack.issuer().state.settings.issuer_url
    );
    let proof = dpop_proof(&key, "POST", &token_url, None, unix_now(), "t-1");
    let bound = token(&stack.exchange_pat(&pat, Some(proof)).await);
    let scheme = format!("DPoP {bound}");
    let at = |url: String, jti: &str| dpop_proof(&key, "GET", &url, Some(&bound), unix_now(), jti);
    let (status, _, _) = get(
        &stack,
        PRIVATE,
        &scheme,
        Some(&at(format!("{ORIGIN}{PRIVATE}"), "o-1")),
    )
    .await;
    assert_eq!(status, 200);
    for (label, url) in [
        ("the address the proxy saw", stack.url(PRIVATE)),
        ("another host", format!("https://other.example{PRIVATE}")),
        ("plain http", format!("http://mesh.example{PRIVATE}")),
    ] {
        let (status, _, body) = get(&stack, PRIVATE, &scheme, Some(&at(url, label))).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_dpop_proof")),
            "{label}"
        );
    }
}

crate::both_fronts!(proofs_name_the_public_origin_when_one_is_set);
