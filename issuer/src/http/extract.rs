//! Request extractors that turn every kind of bad input into a JSON 4xx.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;
use crate::service::admin::{require_admin, Admin};
use crate::service::context::authenticate;
pub use crate::service::context::{Authenticated, Client};
use crate::AppState;

/// `Json<T>` whose rejections name the problem in our error format.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes =
            axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state)
                .await
                .map_err(|e| json_rejection(JsonRejection::BytesRejection(e)))?;
        let not_object = require_object(&bytes).err();
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        let parsed = axum::Json::<T>::from_request(req, state).await;
        match (parsed, not_object) {
            // A wrong content type is named first (415), as before.
            (Err(r @ JsonRejection::MissingJsonContentType(_)), _) => Err(json_rejection(r)),
            (_, Some(e)) => Err(e),
            (Ok(axum::Json(v)), None) => Ok(ApiJson(v)),
            (Err(r), None) => Err(json_rejection(r)),
        }
    }
}

/// A request body must be a JSON object. serde would also fill a struct
/// from an array, by position (found by fuzzing: `[null, null]` was a valid
/// profile update); no client means that. The body is then parsed straight
/// into its type, so a repeated field stays an error (a detour through
/// `serde_json::Value` would keep the last copy, where a proxy in front may
/// read the first).
fn require_object(bytes: &[u8]) -> Result<(), ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "invalid_request",
            "the request body must be a JSON object",
        )),
    }
}

/// A body that may be empty, as `T` (which must be an object).
pub fn object_from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    require_object(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_request("malformed_json", "request body is not valid JSON")
        } else {
            ApiError::bad_request("invalid_request", e.to_string())
        }
    })
}

pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::bad_request("invalid_request", e.body_text()),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request("malformed_json", "request body is not valid JSON")
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            crate::service::error::Kind::UnsupportedMedia,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                crate::service::error::Kind::TooLarge,
                "payload_too_large",
                "request body is too large",
            )
        }
        other => ApiError::bad_request("invalid_request", other.body_text()),
    }
}

/// The address `hops` entries from the right of X-Forwarded-For (every
/// copy of the header, in order), if that entry exists and is an IP address.
pub fn forwarded_client(headers: &axum::http::HeaderMap, hops: u64) -> Option<String> {
    let hops = usize::try_from(hops).ok().filter(|h| *h > 0)?;
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let entry = entries.len().checked_sub(hops).map(|i| entries[i])?;
    entry
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            // An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d.
            .map(|c| c.0.ip().to_canonical());
        let proxies = &state.settings.trusted_proxies;
        let from_proxy = proxies.is_empty()
            || peer_ip.is_some_and(|ip| proxies.iter().any(|net| net.contains(&ip)));
        let forwarded = if from_proxy {
            forwarded_client(&parts.headers, state.settings.trusted_proxy_hops)
        } else {
            None
        };
        let peer = peer_ip.map(|ip| ip.to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect());
        let trace_id = parts
            .extensions
            .get::<crate::http::track::TraceId>()
            .map(|t| t.0.clone());
        let h = &parts.headers;
        let browser = h.contains_key(header::ORIGIN)
            || h.contains_key("sec-fetch-site")
            || h.contains_key("sec-fetch-mode");
        let replaces = cookie_value(h, crate::service::grant::REFRESH_COOKIE)
            .map(|t| crate::domain::tokens::refresh_token_hash(&t));
        Ok(Client {
            ip: forwarded.or(peer),
            user_agent,
            trace_id,
            browser,
            replaces,
            dpop_jkt: None,
        })
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?;
        authenticate(state, token, state.now()).await
    }
}

pub fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// An administrator: the `admin` role over a valid session (403 without it).
impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = Authenticated::from_request_parts(parts, state).await?;
        require_admin(auth)
    }
}

pub(crate) fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing_token", "no bearer token"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid_token", "malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "expected Bearer token"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "invalid_token",
            "expected Bearer token",
        ));
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_read_from_the_right() {
        let mut h = axum::http::HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 10.0.0.1".parse().expect("v"));
        h.append("x-forwarded-for", "192.0.2.7".parse().expect("v"));
        assert_eq!(forwarded_client(&h, 0), None);
        assert_eq!(forwarded_client(&h, 1).as_deref(), Some("192.0.2.7"));
        assert_eq!(forwarded_client(&h, 2).as_deref(), Some("10.0.0.1"));
        assert_eq!(forwarded_client(&h, 3).as_deref(), Some("6.6.6.6"));
        assert_eq!(forwarded_client(&h, 4), None, "fewer entries than hops");
        let mut junk = axum::http::HeaderMap::new();
        junk.append("x-forwarded-for", "<script>".parse().expect("v"));
        assert_eq!(forwarded_client(&junk, 1), None, "only addresses");
    }
}
