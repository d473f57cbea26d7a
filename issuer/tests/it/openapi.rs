//! The served OpenAPI document is the router: every documented operation
//! is routed (never the fallback's 404 or 405), every route is documented,
//! and the document is what `issuer openapi` prints and `docs/` holds.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed_and_nothing_else_is() {
    let t = start(Backend::Sqlite).await.expect("sqlite issuer");
    let r = t
        .http
        .get(t.url("/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 60, "{} paths", paths.len());
    let methods = ["get", "post", "put", "patch", "delete"];
    let mut operations = 0;
    for (path, item) in paths {
        // Any value reaches the handler: a made-up id is the handler's own
        // 404 (with its own message), never the router's.
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in methods {
            let documented = item.get(method).is_some();
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let r = t
                .http
                .request(m, t.url(&concrete))
                .header("content-type", "application/json")
                // As the pages' own forms do (else their CSRF check answers).
                .header("sec-fetch-site", "same-origin")
                .body("{}")
                .send()
                .await
                .expect("request");
            let status = r.status();
            // (The revocation feed is a stream that never ends: not read.)
            let json = r
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            let body: Value = if json {
                r.json().await.unwrap_or(Value::Null)
            } else {
                Value::Null
            };
            let fallback = body["message"] == "no such endpoint";
            if documented {
                operations += 1;
                let op = &item[method];
                assert!(
                    op["operationId"].is_string(),
                    "{method} {path}: no operationId"
                );
                assert!(
                    op["responses"]["400"].is_object(),
                    "{method} {path}: errors"
                );
                assert!(
                    !fallback && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but not routed ({status})"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not documented"
                );
            }
        }
    }
    assert!(operations >= 70, "{operations} operations");
    // Nothing outside the document: the router is built only from the
    // documented handlers (http/mod.rs has no bare `.route(`).
    let source = include_str!("../../src/http/mod.rs");
    assert!(!source.contains(".route("), "a route bypasses the document");
    let r = t
        .http
        .get(t.url("/no/such/path"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_committed_document_is_current() {
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_issuer"))
        .arg("openapi")
        .output()
        .expect("issuer openapi");
    assert!(printed.status.success());
    let printed: Value = serde_json::from_slice(&printed.stdout).expect("json");
    let committed: Value = serde_json::from_str(include_str!("../../../docs/openapi.json"))
        .expect("docs/openapi.json");
    assert!(
        printed == committed,
        "docs/openapi.json is stale: run scripts/render-api-docs.sh"
    );
}

/// What schemathesis found (scripts/fuzz-api.sh), kept as regressions:
/// a JSON array filled a request struct by position (`[null, null]` was a
/// valid profile update, `["a@b.c", "pw"]` a login); every body must be a
/// JSON object, on every kind of endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_must_be_json_objects() {
    let t = start(Backend::Sqlite).await.expect("sqlite issuer");
    let admin = make_admin(&t).await;
    let email = unique_email("arrays");
    t.register(&email, PASSWORD).await;
    let tokens = t.login(&email, PASSWORD).await;
    let cases: Vec<(Method, &str, Option<&str>, String)> = vec![
        (
            Method::PATCH,
            "/auth/profile",
            Some(&tokens.access),
            "[null, null]".into(),
        ),
        (
            Method::POST,
            "/auth/login",
            None,
            format!("[\"{email}\", \"{PASSWORD}\"]"),
        ),
        (
            Method::POST,
            "/auth/refresh",
            None,
            format!("[\"{}\"]", tokens.refresh),
        ),
        (
            Method::POST,
            "/admin/keys/rotate",
            Some(&admin),
            "[null, true]".into(),
        ),
        (
            Method::POST,
            "/auth/password/forgot",
            None,
            format!("[\"{email}\"]"),
        ),
    ];
    for (method, path, token, body) in cases {
        let mut req = t
            .http
            .request(method.clone(), t.url(path))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let r = req.send().await.expect("request");
        let (status, code, message) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{method} {path} {body}"
        );
        assert!(message.contains("JSON object"), "{message}");
    }
    // A repeated field is refused too (a proxy in front may read the first
    // copy where a lenient parser keeps the last).
    let r = t
        .http
        .post(t.url("/auth/login"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"email\": \"someone@example.com\", \"email\": \"{email}\", \"password\": \"{PASSWORD}\"}}"
        ))
        .send()
        .await
        .expect("login");
    let (status, code, message) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(message.contains("duplicate field"), "{message}");
    // Nothing happened: the refresh token still works once.
    let r = t
        .http
        .post(t.url("/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": tokens.refresh}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(r.status(), StatusCode::OK);
}

crate::on_both_backends!(nul_characters_in_bodies_are_refused_not_500,);

/// Found by the fuzzer's log check: a NUL in a sign-in email or a name was
/// a 500 on PostgreSQL (which refuses NUL in text) and fine on SQLite.
/// Refused as bad input everywhere, in JSON and in forms.
async fn nul_characters_in_bodies_are_refused_not_500(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let cases = [
        (
            "/auth/login",
            "application/json",
            r#"{"email":"a\u0000b@example.com","password":"x"}"#,
        ),
        (
            "/auth/register",
            "application/json",
            r#"{"email":"n@example.com","password":"correct horse battery","name":"a\u0000b"}"#,
        ),
        (
            "/auth/password/forgot",
            "application/x-www-form-urlencoded",
            "email=a%00b%40example.com",
        ),
        (
            "/auth/ui/login",
            "application/x-www-form-urlencoded",
            "email=a%00b%40example.com&password=x",
        ),
    ];
    for (path, content_type, body) in cases {
        let r = t
            .http
            .post(t.url(path))
            .header("content-type", content_type)
            .header("sec-fetch-site", "same-origin")
            .body(body)
            .send()
            .await
            .expect("request");
        let (status, code, message) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{path}: {message}"
        );
        assert!(message.contains("NUL"), "{message}");
    }
    // A backslash before `u0000` is text, not a NUL: an ordinary answer.
    let r = t
        .http
        .post(t.url("/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"email":"a\\u0000b@example.com","password":"x"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
