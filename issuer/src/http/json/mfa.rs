//! `/auth/mfa/*` and the admin reset: second factors over JSON. The rules
//! are `service::mfa`'s.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::http::tokens::{no_store, tokens_answer};
use crate::service::admin::Admin;
use crate::service::grant::SignIn;
use crate::service::mfa;
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    pub(crate) mfa_ticket: String,
    #[serde(default)]
    pub(crate) code: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    pub(crate) code: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub(crate) mfa_ticket: String,
    #[serde(default)]
    pub(crate) code: Option<String>,
    #[serde(default)]
    pub(crate) recovery_code: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// A passkey assertion for a ceremony from `/auth/passkeys/login/start`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    passkey: Option<PasskeyAssertion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAssertion {
    ceremony_id: String,
    credential: webauthn_rs::prelude::PublicKeyCredential,
}

/// `GET /auth/mfa`: the caller's factors.
#[utoipa::path(
    get,
    path = "/auth/mfa",
    operation_id = "mfa_status",
    tag = "mfa",
    summary = "Second factors",
    responses(
        (status = 200, description = "The caller's second factors", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn status(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<mfa::Factors>> {
    Ok(Json(mfa::status(&state, &auth).await?))
}

/// `POST /auth/mfa/totp`: starts TOTP enrolment. The secret, its
/// `otpauth://` URI and a QR code are shown this once; nothing changes
/// until a code confirms it.
#[utoipa::path(
    post,
    path = "/auth/mfa/totp",
    operation_id = "mfa_enrol_totp",
    tag = "mfa",
    summary = "Start TOTP enrolment",
    responses(
        (status = 200, description = "A new TOTP secret (inactive until confirmed)", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn enrol_totp(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Response> {
    let enrolment = mfa::enrol_totp(&state, &auth).await?;
    Ok(no_store(Json(enrolment).into_response()))
}

/// `POST /auth/mfa/enrol {mfa_ticket}`: TOTP enrolment for a user whose
/// role requires it, before they have any token.
#[utoipa::path(
    post,
    path = "/auth/mfa/enrol",
    operation_id = "mfa_enrol_with_ticket",
    tag = "mfa",
    summary = "Enrol TOTP during a sign-in that requires it",
    request_body = TicketRequest,
    responses(
        (status = 200, description = "A new TOTP secret for the ticket's user", body = crate::http::openapi::AnyObject),
    ),
)]
pub async fn enrol_with_ticket(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TicketRequest>,
) -> ApiResult<Response> {
    let enrolment = mfa::enrol_with_ticket(&state, &req.mfa_ticket, req.code.as_deref()).await?;
    Ok(no_store(Json(enrolment).into_response()))
}

/// `POST /auth/mfa/enrol/confirm {mfa_ticket, code}`: activates TOTP and
/// completes the sign-in: the token response, with the recovery codes.
#[utoipa::path(
    post,
    path = "/auth/mfa/enrol/confirm",
    operation_id = "mfa_confirm_with_ticket",
    tag = "mfa",
    summary = "Confirm enrolment and finish the sign-in",
    request_body = TicketRequest,
    responses(
        (status = 200, description = "Enrolled and signed in", body = crate::http::tokens::TokenResponse),
    ),
)]
pub async fn confirm_with_ticket(
    State(state): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<TicketRequest>,
) -> ApiResult<Response> {
    let (signed_in, codes) =
        mfa::confirm_with_ticket(&state, &client, &req.mfa_ticket, req.code.as_deref()).await?;
    Ok(match signed_in {
        SignIn::Tokens(tokens) => tokens_answer(tokens, Some(codes)),
        other => other.into_response(),
    })
}

/// `POST /auth/mfa/totp/confirm {code}`: activates TOTP and answers the
/// recovery codes, shown this once.
#[utoipa::path(
    post,
    path = "/auth/mfa/totp/confirm",
    operation_id = "mfa_confirm_totp",
    tag = "mfa",
    summary = "Confirm TOTP with a code",
    request_body = ConfirmRequest,
    responses(
        (status = 200, description = "TOTP active; the recovery codes, shown once", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn confirm_totp(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> ApiResult<Response> {
    let codes = mfa::confirm_totp(&state, &client, &auth, &req.code).await?;
    Ok(Json(json!({"enabled": "totp", "recovery_codes": codes})).into_response())
}

/// `DELETE /auth/mfa/totp`: removes TOTP and the recovery codes; needs a
/// recent authentication.
#[utoipa::path(
    delete,
    path = "/auth/mfa/totp",
    operation_id = "mfa_remove_totp",
    tag = "mfa",
    summary = "Remove TOTP",
    responses(
        (status = 204, description = "TOTP removed"),
    ),
    security(("bearer" = [])),
)]
pub async fn remove_totp(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
) -> ApiResult<Response> {
    mfa::remove_totp(&state, &client, &auth).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /auth/mfa/recovery-codes`: a new set; the old one stops working.
#[utoipa::path(
    post,
    path = "/auth/mfa/recovery-codes",
    operation_id = "mfa_regenerate_codes",
    tag = "mfa",
    summary = "New recovery codes",
    responses(
        (status = 200, description = "New recovery codes (the old ones are void)", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn regenerate_codes(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let codes = mfa::regenerate_codes(&state, &client, &auth).await?;
    Ok(Json(json!({"recovery_codes": codes})))
}

/// `POST /auth/mfa/verify {mfa_ticket, code | recovery_code}`: completes a
/// sign-in. Each ticket allows five attempts and one success; the user's
/// attempts are also counted across tickets.
#[utoipa::path(
    post,
    path = "/auth/mfa/verify",
    operation_id = "mfa_verify",
    tag = "mfa",
    summary = "Complete a sign-in with a second factor",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Signed in", body = crate::http::tokens::TokenResponse),
    ),
)]
pub async fn verify(
    State(state): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<SignIn> {
    mfa::verify(
        &state,
        &client,
        &req.mfa_ticket,
        &req.code,
        &req.recovery_code,
    )
    .await
}

/// `POST /auth/mfa/step-up {code | recovery_code | password | passkey}`:
/// proves a factor again inside the session: a fresh `auth_time` (and
/// `mfa` for a second factor) in a new access token; the session goes on.
#[utoipa::path(
    post,
    path = "/auth/mfa/step-up",
    operation_id = "mfa_step_up",
    tag = "mfa",
    summary = "Step up this session",
    request_body = StepUpRequest,
    responses(
        (status = 200, description = "A new access token for this session, with the new `amr`/`auth_time`", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn step_up(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<StepUpRequest>,
) -> ApiResult<Response> {
    let proof = mfa::StepUp {
        code: req.code,
        recovery_code: req.recovery_code,
        password: req.password,
        passkey: req.passkey.map(|p| (p.ceremony_id, p.credential)),
    };
    Ok(mfa::step_up(&state, &client, &auth, proof)
        .await?
        .into_response())
}

/// `DELETE /admin/users/{id}/mfa`: removes the user's factors and ends
/// their sessions (someone who lost their device signs in with the password
/// and enrols again).
#[utoipa::path(
    delete,
    path = "/admin/users/{id}/mfa",
    operation_id = "mfa_admin_reset",
    tag = "admin",
    summary = "Reset a user's second factors",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "The user's second factors removed"),
    ),
    security(("admin" = [])),
)]
pub async fn admin_reset(
    State(state): State<AppState>,
    client: Client,
    admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<mfa::Reset>> {
    Ok(Json(mfa::admin_reset(&state, &client, &admin, &id).await?))
}
