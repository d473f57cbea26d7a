//! What browsers need from an API that sets cookies: CSRF refusal for
//! unsafe requests carrying our cookies from another site, CORS for the
//! allowed origins, and security headers on every answer.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use oauth2::url::Url;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::pages::PAGE_COOKIE;
use crate::http::error::ApiError;
use crate::http::github_state::GITHUB_COOKIE;
use crate::service::grant::REFRESH_COOKIE;
use crate::AppState;

fn origin_of(url: &str) -> Option<String> {
    Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

/// Origins trusted to send our cookies: the issuer's own, and the allowed.
fn trusted_origins(state: &AppState) -> Vec<String> {
    std::iter::once(state.settings.issuer_url.as_str())
        .chain(
            state
                .settings
                .cors_allowed_origins
                .iter()
                .map(String::as_str),
        )
        .filter_map(origin_of)
        .collect()
}

/// Whether an unsafe request that carries our cookies comes from a page we
/// trust. Browsers send `Origin` on every cross-site (and same-site) unsafe
/// request, and `Sec-Fetch-Site`; a request with neither is not a browser's
/// and cannot be forged by a page.
pub fn cookie_use_allowed(headers: &HeaderMap, trusted: &[String]) -> bool {
    let single = |name: header::HeaderName| {
        let mut values = headers.get_all(name).iter();
        let first = values.next();
        // Two values: ambiguous, refused.
        match (first, values.next()) {
            (Some(v), None) => Some(v.to_str().ok()),
            (Some(_), Some(_)) => Some(None),
            (None, _) => None,
        }
    };
    // `Origin: null` is what a browser sends for a form posted from a page
    // with `Referrer-Policy: no-referrer` (the issuer's own pages), and also
    // from sandboxed or opaque contexts: it proves nothing either way, so
    // `Sec-Fetch-Site` decides, and without it the request is refused.
    let mut opaque_origin = false;
    match single(header::ORIGIN) {
        Some(Some("null")) => opaque_origin = true,
        Some(Some(origin)) => {
            let origin = origin_of(origin);
            return origin.is_some_and(|o| trusted.contains(&o));
        }
        Some(None) => return false,
        None => {}
    }
    match single(header::HeaderName::from_static("sec-fetch-site")) {
        Some(Some(site)) => matches!(site, "same-origin" | "none"),
        Some(None) => false,
        None => !opaque_origin,
    }
}

/// A hosted page's form: `Sec-Fetch-Site: same-origin` (browsers send it;
/// the pages' origin is wherever the proxy serves them), or, from a browser
/// without fetch metadata, `Origin` equal to the issuer's own origin.
fn page_form_allowed(headers: &HeaderMap, state: &AppState) -> bool {
    let one = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    };
    match one("sec-fetch-site") {
        Some(site) => site == "same-origin",
        None => one("origin")
            .and_then(origin_of)
            .is_some_and(|o| Some(o) == origin_of(&state.settings.issuer_url)),
    }
}

fn carries_our_cookies(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(k, _)| k == REFRESH_COOKIE || k == GITHUB_COOKIE || k == PAGE_COOKIE)
}

pub async fn csrf(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let unsafe_method = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    // The hosted pages' forms are checked even without cookies (a foreign
    // page must not sign a browser in to the attacker's account either), and
    // more strictly: only the issuer's own pages, and a request that proves
    // nothing (neither header) is refused.
    if unsafe_method && request.uri().path().starts_with("/auth/ui/") {
        if !page_form_allowed(request.headers(), &state) {
            return ApiError::new(
                crate::service::error::Kind::Forbidden,
                "cross_site_request",
                "this form was not posted from the issuer's own pages",
            )
            .into_response();
        }
    } else if unsafe_method
        && carries_our_cookies(request.headers())
        && !cookie_use_allowed(request.headers(), &trusted_origins(&state))
    {
        return ApiError::new(
            crate::service::error::Kind::Forbidden,
            "cross_site_request",
            "this request carries the issuer's cookies from a page not allowed to use them",
        )
        .into_response();
    }
    next.run(request).await
}

/// Security headers on every answer; `no-store` wherever the route did not
/// choose its own caching (answers name users, sessions and tokens).
pub async fn security_headers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The hosted pages set their own (a stylesheet, their forms).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    // The hosted pages choose `same-origin` (their forms then carry Origin).
    if !h.contains_key(header::REFERRER_POLICY) {
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.settings.tls_cert_file.is_some() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// CORS for `--cors-allowed-origins` only, with credentials (the refresh
/// cookie); none at all when the list is empty.
pub fn cors(state: &AppState) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = state
        .settings
        .cors_allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([
                header::RETRY_AFTER,
                header::HeaderName::from_static("ratelimit"),
                header::HeaderName::from_static("ratelimit-policy"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    }

    #[test]
    fn cookies_are_used_only_from_trusted_pages() {
        let trusted = vec![
            "https://issuer.test".to_string(),
            "https://app.example".to_string(),
        ];
        let allowed = |pairs: &[(&str, &str)]| cookie_use_allowed(&h(pairs), &trusted);
        assert!(allowed(&[("origin", "https://issuer.test")]));
        assert!(
            allowed(&[("origin", "https://APP.example:443")]),
            "origins compare parsed"
        );
        assert!(!allowed(&[("origin", "https://evil.example")]));
        assert!(!allowed(&[("origin", "null")]));
        assert!(!allowed(&[
            ("origin", "null"),
            ("sec-fetch-site", "cross-site")
        ]));
        assert!(allowed(&[
            ("origin", "null"),
            ("sec-fetch-site", "same-origin")
        ]));
        assert!(!allowed(&[("origin", "https://app.example.evil.example")]));
        assert!(!allowed(&[
            ("origin", "https://issuer.test"),
            ("origin", "https://evil.example")
        ]));
        assert!(allowed(&[("sec-fetch-site", "same-origin")]));
        assert!(allowed(&[("sec-fetch-site", "none")]));
        assert!(!allowed(&[("sec-fetch-site", "cross-site")]));
        assert!(!allowed(&[("sec-fetch-site", "same-site")]));
        assert!(allowed(&[]), "not a browser");
    }
}
