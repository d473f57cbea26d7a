//! Accounts and passwords: registration, password login, password change.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::http::error::ApiResult;
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::http::tokens::clear_cookie_response;
use crate::service::accounts;
use crate::store::User;
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(format = "email", max_length = 254, example = "ada@example.com")]
    pub(crate) email: String,
    #[schema(
        min_length = 8,
        max_length = 1024,
        example = "correct horse battery staple"
    )]
    pub(crate) password: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    id: String,
    email: String,
    name: Option<String>,
    roles: Vec<String>,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            roles: u.roles.clone(),
            created_at: u.created_at,
            avatar_url: u.avatar_url.clone(),
        }
    }
}

#[utoipa::path(
    post,
    path = "/auth/register",
    operation_id = "auth_register",
    tag = "auth",
    summary = "Create an account",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The account (sign in next; a verification mail is on its way)", body = UserView),
        (status = 202, description = "With `--quiet-registration`: the same answer whether or not the address had an account (its owner gets a mail)", body = crate::http::openapi::AnyObject),
    ),
)]
pub async fn register(
    State(state): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<Response> {
    let registered =
        accounts::register(&state, &client, &req.email, req.password, req.name).await?;
    Ok(match registered {
        accounts::Registered::Created(user) => {
            (StatusCode::CREATED, Json(UserView::from(&*user))).into_response()
        }
        accounts::Registered::Quiet => quiet_answer(),
    })
}

/// `--quiet-registration`'s one answer, account new or not.
fn quiet_answer() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": "check_your_mail"})),
    )
        .into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(format = "email", max_length = 254, example = "ada@example.com")]
    pub(crate) email: String,
    #[schema(max_length = 1024)]
    pub(crate) password: String,
}

#[utoipa::path(
    post,
    path = "/auth/login",
    operation_id = "auth_login",
    tag = "auth",
    summary = "Sign in with email and password",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in: an access token, and a refresh token (also set as the `__Host-refresh_token` cookie)", body = crate::http::tokens::TokenResponse),
        (status = 401, description = "Wrong credentials, or `mfa_required` with an MFA ticket", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let signed_in = accounts::login(&state, &client, &req.email, req.password).await?;
    Ok(signed_in.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    pub(crate) current_password: String,
    #[schema(
        min_length = 8,
        max_length = 1024,
        example = "correct horse battery staple"
    )]
    pub(crate) new_password: String,
}

/// Changing the password ends every session, this one included.
#[utoipa::path(
    post,
    path = "/auth/password",
    operation_id = "auth_change_password",
    tag = "auth",
    summary = "Change the password",
    request_body = PasswordChangeRequest,
    responses(
        (status = 204, description = "Changed; every session ended"),
    ),
    security(("bearer" = [])),
)]
pub async fn change_password(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<PasswordChangeRequest>,
) -> ApiResult<Response> {
    accounts::change_password(
        &state,
        &client,
        &auth,
        req.current_password,
        req.new_password,
    )
    .await?;
    Ok(clear_cookie_response())
}
