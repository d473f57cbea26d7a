//! Sessions after sign-in: refresh (rotation, the grace window, reuse
//! detection), logout, and the user's own session list.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::UserView;
use crate::http::error::{ApiError, ApiResult};
pub use crate::http::extract::cookie_value;
use crate::http::extract::{Authenticated, Client};
pub use crate::http::tokens::clear_cookie_response;
use crate::service::grant::{Delivery, REFRESH_COOKIE};
use crate::service::sessions;
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// Refresh token from the JSON body, or else from the cookie; the next one
/// goes back the same way (a cookie's never in a body a script can read).
fn presented_refresh_token(headers: &HeaderMap, body: &Bytes) -> ApiResult<(String, Delivery)> {
    if !body.is_empty() {
        let req: RefreshRequest = crate::http::extract::object_from_slice(body)?;
        return Ok((req.refresh_token, Delivery::CookieAndBody));
    }
    let from_cookie = cookie_value(headers, REFRESH_COOKIE).map(|t| (t, Delivery::CookieOnly));
    from_cookie.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_request",
            "missing field `refresh_token` (in the body or the cookie)",
        )
    })
}

#[utoipa::path(
    post,
    path = "/auth/refresh",
    operation_id = "sessions_refresh",
    tag = "sessions",
    summary = "Rotate the refresh token",
    request_body = Option<crate::http::openapi::RefreshRequest>,
    responses(
        (status = 200, description = "A new access token and the next refresh token", body = crate::http::tokens::TokenResponse),
    ),
    security(("refresh_cookie" = []), ()),
)]
pub async fn refresh(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (presented, delivery) = presented_refresh_token(&headers, &body)?;
    Ok(
        sessions::refresh(&state, &client, &presented, delivery, None)
            .await?
            .into_response(),
    )
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    operation_id = "sessions_logout",
    tag = "sessions",
    summary = "End this session",
    responses(
        (status = 204, description = "This session ended; the refresh cookie cleared"),
    ),
    security(("bearer" = [])),
)]
pub async fn logout(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
) -> ApiResult<Response> {
    sessions::logout(&state, &client, &auth).await?;
    Ok(clear_cookie_response())
}

#[utoipa::path(
    post,
    path = "/auth/logout-all",
    operation_id = "sessions_logout_all",
    tag = "sessions",
    summary = "End every session",
    responses(
        (status = 204, description = "Every session of the user ended"),
    ),
    security(("bearer" = [])),
)]
pub async fn logout_all(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
) -> ApiResult<Response> {
    sessions::logout_all(&state, &client, &auth).await?;
    Ok(clear_cookie_response())
}

#[utoipa::path(
    get,
    path = "/auth/me",
    operation_id = "sessions_me",
    tag = "sessions",
    summary = "The caller's identity",
    responses(
        (status = 200, description = "Who the token is", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn me(auth: Authenticated) -> Json<serde_json::Value> {
    Json(json!({
        "user": UserView::from(&auth.user),
        "session_id": auth.session.id,
        "amr": auth.claims.amr,
    }))
}

#[utoipa::path(
    get,
    path = "/auth/sessions",
    operation_id = "sessions_sessions",
    tag = "sessions",
    summary = "Active sessions",
    responses(
        (status = 200, description = "The caller's active sessions", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn sessions(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let views = sessions::list(&state, &auth).await?;
    Ok(Json(json!({ "sessions": views })))
}

#[utoipa::path(
    delete,
    path = "/auth/sessions/{id}",
    operation_id = "sessions_delete_session",
    tag = "sessions",
    summary = "End one of the caller's sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Ended"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_session(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    sessions::delete(&state, &client, &auth, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
