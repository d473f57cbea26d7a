//! DPoP at the token endpoint (RFC 9449 §5): a proof binds the tokens to
//! the client's key (`cnf.jkt`, `token_type: DPoP`), a bound session's
//! refresh token works only with a proof by the same key, and every way a
//! proof can be wrong is refused with `invalid_dpop_proof`: another URL or
//! method, an old one, a replay, a bad signature, a private key in its
//! header, `ath` where no token is, two headers. The issuer's own
//! endpoints refuse a bound token; introspection reports its key. On
//! SQLite and PostgreSQL.

use issuer::domain::keys::SigningKey;
use issuer::testing::{dpop_jkt, dpop_key, dpop_proof, unix_now, TEST_ISSUER_URL};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::oauth::{code_for, oauth_error, page_sign_in, pkce, register_client, REDIRECT};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(tokens_bind_to_the_proven_key);

fn client_key() -> SigningKey {
    dpop_key(auth_types::SigningAlg::ES256)
}

fn token_url() -> String {
    format!("{TEST_ISSUER_URL}/auth/oauth2/token")
}

fn proof(key: &SigningKey, jti: &str) -> String {
    dpop_proof(key, "POST", &token_url(), None, unix_now(), jti)
}

async fn token(t: &TestIssuer, form: &[(&str, &str)], dpop: &[&str]) -> reqwest::Response {
    let mut req = t.http.post(t.url("/auth/oauth2/token")).form(form);
    for p in dpop {
        req = req.header("dpop", *p);
    }
    req.send().await.expect("token")
}

async fn tokens_bind_to_the_proven_key(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    register_client(
        &t,
        &admin,
        json!({"client_id": "cli", "name": "CLI", "type": "public", "first_party": true,
            "redirect_uris": [REDIRECT], "scopes": ["openid", "notes:read"],
            "grant_types": ["authorization_code", "refresh_token"]}),
    )
    .await;
    let email = unique_email("dpop");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    let key = client_key();
    let jkt = dpop_jkt(&key);

    // The code exchanged with a proof: bound tokens.
    let p = pkce();
    let code = code_for(&t, &cookies, "cli", &p).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", p.verifier.as_str()),
        ("client_id", "cli"),
    ];
    let r = token(&t, &form, &[&proof(&key, "code-1")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["token_type"], "DPoP");
    let access = v["access_token"].as_str().expect("at").to_string();
    let refresh = v["refresh_token"].as_str().expect("rt").to_string();
    let claims = t.verify(&access).await;
    assert_eq!(
        claims.cnf.as_ref().map(|c| c.jkt.as_str()),
        Some(jkt.as_str())
    );

    // The bound refresh token: nothing without a proof, nothing with
    // another key's, tokens with its own key's.
    let refresh_form = |rt: &str| {
        vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", rt.to_string()),
            ("client_id", "cli".to_string()),
        ]
    };
    let send = |form: Vec<(&'static str, String)>, dpop: Option<String>| {
        let t = &t;
        async move {
            let mut req = t.http.post(t.url("/auth/oauth2/token")).form(&form);
            if let Some(p) = dpop {
                req = req.header("dpop", p);
            }
            req.send().await.expect("token")
        }
    };
    let r = send(refresh_form(&refresh), None).await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into())
    );
    let other = client_key();
    let r = send(refresh_form(&refresh), Some(proof(&other, "other-1"))).await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into())
    );
    let r = send(refresh_form(&refresh), Some(proof(&key, "refresh-1"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["token_type"], "DPoP");
    let renewed = t.verify(v["access_token"].as_str().expect("at")).await;
    assert_eq!(renewed.cnf, claims.cnf);

    // Every way a proof can be wrong.
    let p2 = pkce();
    let code2 = code_for(&t, &cookies, "cli", &p2).await;
    let form2 = [
        ("grant_type", "authorization_code"),
        ("code", code2.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", p2.verifier.as_str()),
        ("client_id", "cli"),
    ];
    let with_private = {
        use auth_types::jws::b64url_encode;
        let good = proof(&key, "private-1");
        let mut parts = good.split('.');
        let header: Value = serde_json::from_slice(
            &auth_types::jws::b64url_decode(parts.next().expect("h")).expect("b64"),
        )
        .expect("json");
        let mut header = header;
        header["jwk"]["d"] = json!("AAAA");
        format!(
            "{}.{}.{}",
            b64url_encode(header.to_string().as_bytes()),
            parts.next().expect("p"),
            parts.next().expect("s")
        )
    };
    // One character inside the signature changed (never a no-op).
    let mut tampered = proof(&key, "tampered-1").into_bytes();
    let at = tampered.iter().rposition(|b| *b == b'.').expect("dot") + 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("utf8");
    let replayed = proof(&key, "code-1");
    for (label, dpop) in [
        (
            "another URL",
            vec![dpop_proof(
                &key,
                "POST",
                "https://issuer.test/other",
                None,
                unix_now(),
                "u-1",
            )],
        ),
        (
            "another method",
            vec![dpop_proof(
                &key,
                "GET",
                &token_url(),
                None,
                unix_now(),
                "m-1",
            )],
        ),
        (
            "too old",
            vec![dpop_proof(
                &key,
                "POST",
                &token_url(),
                None,
                unix_now() - 120,
                "o-1",
            )],
        ),
        (
            "from the future",
            vec![dpop_proof(
                &key,
                "POST",
                &token_url(),
                None,
                unix_now() + 60,
                "f-1",
            )],
        ),
        (
            "ath without a token",
            vec![dpop_proof(
                &key,
                "POST",
                &token_url(),
                Some("x"),
                unix_now(),
                "a-1",
            )],
        ),
        ("replayed jti", vec![replayed]),
        ("bad signature", vec![tampered]),
        ("a private key in the header", vec![with_private]),
        ("not a JWS", vec!["not-a-proof".to_string()]),
        (
            "two headers",
            vec![proof(&key, "two-1"), proof(&key, "two-2")],
        ),
    ] {
        let refs: Vec<&str> = dpop.iter().map(String::as_str).collect();
        let r = token(&t, &form2, &refs).await;
        assert_eq!(
            oauth_error(r).await,
            (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into()),
            "{label}"
        );
    }
    // None of those spent the code.
    let r = token(&t, &form2, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["token_type"], "Bearer");
    assert!(t
        .verify(v["access_token"].as_str().expect("at"))
        .await
        .cnf
        .is_none());
    // That session is not bound; a refresh with a proof binds the access
    // token it gets (and says so), never answering DPoP for a Bearer token.
    let unbound_refresh = v["refresh_token"].as_str().expect("rt").to_string();
    let r = send(
        refresh_form(&unbound_refresh),
        Some(proof(&other, "upgrade-1")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["token_type"], "DPoP");
    let upgraded = t.verify(v["access_token"].as_str().expect("at")).await;
    assert_eq!(upgraded.cnf.map(|c| c.jkt), Some(dpop_jkt(&other)));

    // userinfo: the bound token as Bearer is refused; under the DPoP
    // scheme with a proof for this request it answers, once per proof.
    let r = t.get_auth("/auth/oauth2/userinfo", &access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let userinfo_url = format!("{TEST_ISSUER_URL}/auth/oauth2/userinfo");
    let p = dpop_proof(
        &key,
        "GET",
        &userinfo_url,
        Some(&access),
        unix_now(),
        "ui-1",
    );
    let ask = |p: String| {
        t.http
            .get(t.url("/auth/oauth2/userinfo"))
            .header("authorization", format!("DPoP {access}"))
            .header("dpop", p)
            .send()
    };
    let r = ask(p.clone()).await.expect("userinfo");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(ask(p).await.expect("userinfo").status().is_client_error());
    let theirs = dpop_proof(
        &other,
        "GET",
        &userinfo_url,
        Some(&access),
        unix_now(),
        "ui-2",
    );
    assert!(ask(theirs)
        .await
        .expect("userinfo")
        .status()
        .is_client_error());

    // Discovery names the algorithms.
    let meta = t.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        meta["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256"])
    );
}
