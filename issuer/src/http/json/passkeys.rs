//! `/auth/passkeys/*`: passkeys over JSON. The rules (ceremonies, the
//! first factor, sign-in) are `service::passkeys`'.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::grant::SignIn;
use crate::service::passkeys::{self, LoginFinish, RegisterFinish};
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub(crate) name: String,
}

/// `POST /auth/passkeys/register/start`: options for
/// `navigator.credentials.create`, asking for a discoverable credential so
/// the passkey can also sign in without a password.
#[utoipa::path(
    post,
    path = "/auth/passkeys/register/start",
    operation_id = "passkeys_register_start",
    tag = "passkeys",
    summary = "Start registering a passkey",
    responses(
        (status = 200, description = "WebAuthn creation options and the ceremony id", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn register_start(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<passkeys::Started>> {
    Ok(Json(passkeys::register_start(&state, &auth).await?))
}

/// `POST /auth/passkeys/register/finish {ceremony_id, credential, name?}`.
#[utoipa::path(
    post,
    path = "/auth/passkeys/register/finish",
    operation_id = "passkeys_register_finish",
    tag = "passkeys",
    summary = "Finish registering a passkey",
    request_body = RegisterFinish,
    responses(
        (status = 201, description = "Registered", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn register_finish(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<RegisterFinish>,
) -> ApiResult<Response> {
    let view = passkeys::register_finish(
        &state,
        &client,
        &auth,
        &req.ceremony_id,
        &req.credential,
        req.name.as_deref(),
    )
    .await?;
    Ok(crate::http::answers::passkey_added(&view))
}

/// `GET /auth/passkeys`.
#[utoipa::path(
    get,
    path = "/auth/passkeys",
    operation_id = "passkeys_list",
    tag = "passkeys",
    summary = "Passkeys",
    responses(
        (status = 200, description = "The caller's passkeys", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let keys = passkeys::list(&state, &auth).await?;
    Ok(Json(json!({ "passkeys": keys })))
}

/// `PATCH /auth/passkeys/{id} {name}`.
#[utoipa::path(
    patch,
    path = "/auth/passkeys/{id}",
    operation_id = "passkeys_rename",
    tag = "passkeys",
    summary = "Rename a passkey",
    request_body = Rename,
    params(("id" = String, Path, description = "The passkey's id")),
    responses(
        (status = 200, description = "Renamed", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn rename(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Rename>,
) -> ApiResult<Json<serde_json::Value>> {
    let name = passkeys::rename(&state, &auth, &id, &req.name).await?;
    Ok(Json(json!({"id": id, "name": name})))
}

/// `DELETE /auth/passkeys/{id}`: needs a recent authentication.
#[utoipa::path(
    delete,
    path = "/auth/passkeys/{id}",
    operation_id = "passkeys_delete",
    tag = "passkeys",
    summary = "Remove a passkey",
    params(("id" = String, Path, description = "The passkey's id")),
    responses(
        (status = 204, description = "Removed"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    passkeys::delete(&state, &client, &auth, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/passkeys/login/start`: options for
/// `navigator.credentials.get` with discoverable credentials: any passkey of
/// this site may answer. The finish decides whose it is (and, after a
/// password, that it is that user's).
#[utoipa::path(
    post,
    path = "/auth/passkeys/login/start",
    operation_id = "passkeys_login_start",
    tag = "passkeys",
    summary = "Start a passkey sign-in",
    responses(
        (status = 200, description = "WebAuthn request options and the ceremony id", body = crate::http::openapi::AnyObject),
    ),
)]
pub async fn login_start(
    State(state): State<AppState>,
    client: Client,
) -> ApiResult<Json<passkeys::Started>> {
    Ok(Json(passkeys::login_start(&state, &client).await?))
}

/// `POST /auth/passkeys/login/finish {ceremony_id, credential, mfa_ticket?}`:
/// the token response. With a ticket, the passkey completes that sign-in as
/// its second factor and must be that user's.
#[utoipa::path(
    post,
    path = "/auth/passkeys/login/finish",
    operation_id = "passkeys_login_finish",
    tag = "passkeys",
    summary = "Finish a passkey sign-in",
    request_body = LoginFinish,
    responses(
        (status = 200, description = "Signed in", body = crate::http::tokens::TokenResponse),
    ),
)]
pub async fn login_finish(
    State(state): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<LoginFinish>,
) -> ApiResult<SignIn> {
    passkeys::login_finish(
        &state,
        &client,
        &req.ceremony_id,
        &req.credential,
        req.mfa_ticket.as_deref(),
    )
    .await
}
