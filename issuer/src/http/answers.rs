//! Answers the JSON API and the pages' script both give, written once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::service::passkeys::PasskeyView;

/// A registered passkey (201): its id, name and creation time.
pub fn passkey_added(view: &PasskeyView) -> Response {
    let body = json!({"id": view.id, "name": view.name, "created_at": view.created_at});
    (StatusCode::CREATED, Json(body)).into_response()
}
