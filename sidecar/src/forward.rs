//! The same decision over HTTP, for proxies that speak only HTTP
//! authorisation: nginx `auth_request`, Traefik `forwardAuth`, Caddy
//! `forward_auth`. The proxy sends the original request's headers plus the
//! original method, URI and host in `X-Forwarded-Method`, `X-Forwarded-Uri`
//! and `X-Forwarded-Host` (or nginx's customary `X-Original-*`). An allow is
//! a 200 carrying the identity headers for the proxy to set on the upstream
//! request (replacing the client's copies); a deny is the same status, JSON
//! body and challenge as the gRPC path.
//!
//! The endpoint trusts those headers, so only the proxy may reach it: it is
//! served on the admin listener, and only with `--forward-auth`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::authz::{now_ms, Authorizer};
use crate::decision::{Decision, DenyReason};
use crate::edge::{answer, Answer, ProxyRequest};

/// Header names lower-cased, repeats joined with ',' (as Envoy gives them
/// to the gRPC path, so one token and CSRF logic serves both).
fn flatten(headers: &HeaderMap) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (name, value) in headers {
        // Kept even when not UTF-8 (lossily): a dropped Authorization would
        // let a cookie be judged while the upstream reads the header.
        let v = String::from_utf8_lossy(value.as_bytes());
        let v = v.as_ref();
        out.entry(name.as_str().to_string())
            .and_modify(|e| {
                e.push(',');
                e.push_str(v);
            })
            .or_insert_with(|| v.to_string());
    }
    out
}

/// The one value of the first of `names` present; `Err` when it was sent
/// more than once (ambiguous: which would the upstream see?).
fn single<'a>(headers: &'a HeaderMap, names: &[&str]) -> Result<Option<&'a str>, ()> {
    for name in names {
        let mut values = headers.get_all(*name).iter();
        if let Some(first) = values.next() {
            if values.next().is_some() {
                return Err(());
            }
            return first.to_str().map(Some).map_err(|_| ());
        }
    }
    Ok(None)
}

pub async fn check(State(authz): State<Arc<Authorizer>>, headers: HeaderMap) -> Response {
    if !authz.settings.forward_auth {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let now = now_ms();
    // One family of forwarding headers, all from the proxy: Traefik's
    // X-Forwarded-* or nginx's customary X-Original-*. Both present means a
    // client's copies got through beside the proxy's: refused, as is a
    // request without its host (never the Host of the call to us).
    let forwarded = ["x-forwarded-method", "x-forwarded-uri", "x-forwarded-host"]
        .iter()
        .any(|h| headers.contains_key(*h));
    let original = ["x-original-method", "x-original-uri", "x-original-host"]
        .iter()
        .any(|h| headers.contains_key(*h));
    let family = match (forwarded, original) {
        (true, false) => Some("x-forwarded"),
        (false, true) => Some("x-original"),
        _ => None,
    };
    let named = |suffix: &str| {
        family
            .map(|f| single(&headers, &[&format!("{f}-{suffix}")]))
            .unwrap_or(Err(()))
    };
    let method = named("method");
    let uri = named("uri");
    let host = named("host");
    let proto = single(&headers, &["x-forwarded-proto"]);
    let flat = flatten(&headers);
    let decision = match (method, uri, host, proto) {
        (Ok(Some(method)), Ok(Some(path)), Ok(Some(host)), Ok(proto)) => {
            let request = ProxyRequest {
                method,
                scheme: proto.unwrap_or("http"),
                host,
                path,
                headers: &flat,
            };
            crate::edge::decide(&authz, &request, now).await
        }
        // Missing or repeated: no request to judge.
        _ => authz.refuse(DenyReason::MalformedRequest),
    };
    respond(&authz, decision, &flat)
}

fn respond(authz: &Authorizer, decision: Decision, flat: &HashMap<String, String>) -> Response {
    let header = |name: &str, value: &str| {
        axum::http::HeaderName::from_bytes(name.as_bytes())
            .ok()
            .zip(axum::http::HeaderValue::from_str(value).ok())
    };
    match answer(&authz.settings, &decision, flat) {
        // The identity headers to set. Those the gRPC path removes (public
        // routes, no roles) are absent here: the proxy then sets them
        // empty, which removes the client's copy. `Cookie` is always
        // answered (the request's, without the issuer's cookies) so the
        // proxy can always set it from the answer.
        Answer::Allow { set, remove } => {
            let mut r = StatusCode::OK.into_response();
            for (k, v) in set.iter().filter_map(|(k, v)| header(k, v)) {
                r.headers_mut().insert(k, v);
            }
            let rewritten =
                set.iter().any(|(k, _)| k == "cookie") || remove.iter().any(|k| k == "cookie");
            if let (false, Some((k, v))) = (
                rewritten,
                flat.get("cookie").and_then(|v| header("cookie", v)),
            ) {
                r.headers_mut().insert(k, v);
            }
            r
        }
        Answer::Deny {
            status,
            headers,
            body,
        } => {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            for (k, v) in headers.iter().filter_map(|(k, v)| header(k, v)) {
                r.headers_mut().insert(k, v);
            }
            r
        }
    }
}
