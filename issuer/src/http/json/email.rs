//! Mailed tokens: email verification and password reset (OWASP's Forgot
//! Password cheat sheet: the same answer whether or not the account exists,
//! single-use hashed tokens with a short expiry, a reset ends every session,
//! and no automatic sign-in).
//!
//! A mailed link opens a small page whose form posts the token (a GET never
//! spends one, so mail scanners that prefetch links spend nothing).

use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::domain::password;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Authenticated, Client};
use crate::service::mail::escape;
use crate::AppState;

/// A JSON body, or an HTML form's (which the mailed pages post).
pub struct JsonOrForm<T> {
    pub value: T,
    pub form: bool,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            match axum::Form::<T>::from_request(req, state).await {
                Ok(axum::Form(value)) => Ok(JsonOrForm { value, form: true }),
                Err(e) => Err(ApiError::bad_request("invalid_request", e.body_text())),
            }
        } else {
            let crate::http::extract::ApiJson(value) =
                crate::http::extract::ApiJson::<T>::from_request(req, state).await?;
            Ok(JsonOrForm { value, form: false })
        }
    }
}

/// `POST /auth/email/verify/resend` (signed in).
#[utoipa::path(
    post,
    path = "/auth/email/verify/resend",
    operation_id = "email_resend",
    tag = "email",
    summary = "Send the verification link again",
    responses(
        (status = 202, description = "A new link is on its way", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn resend(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Response> {
    crate::service::email::resend(&state, &auth).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "sent"}))).into_response())
}

/// Other query parameters (a mail client's tracking tags) are ignored.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// The pages' layout (stylesheet, CSP), around markup built here with
/// `escape`.
fn page(title: &str, body: &str) -> Response {
    let mut r = crate::http::pages::page(title, maud::PreEscaped(body.to_string()));
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The mailed token is in this page's URL: no Referer may carry it.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let mut r = page(title, &format!("<p>{}</p>", escape(message)));
    *r.status_mut() = status;
    r
}

/// `GET /auth/email/verify?token=`: the page the mailed link opens.
#[utoipa::path(
    get,
    path = "/auth/email/verify",
    operation_id = "email_verify_page",
    tag = "email",
    summary = "Email verification page (from the mailed link)",
    params(TokenQuery),
    responses(
        (status = 200, description = "A page whose button posts the token", content_type = "text/html", body = String),
    ),
)]
pub async fn verify_page(Query(q): Query<TokenQuery>) -> Response {
    page(
        "Confirm your email address",
        &format!(
            "<form method=\"post\" action=\"/auth/email/verify\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <p><label>Your account's password (if it has one) \
             <input type=\"password\" name=\"password\" autocomplete=\"current-password\"></label></p>\
             <button type=\"submit\">Confirm my email address</button></form>",
            escape(&q.token)
        ),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    token: String,
    /// The account's password, when it has one and the address was never
    /// proved: the link alone would confirm an account that someone else
    /// registered with this address (and whose password they know).
    #[serde(default)]
    password: Option<String>,
}

/// `POST /auth/email/verify` with the mailed token.
#[utoipa::path(
    post,
    path = "/auth/email/verify",
    operation_id = "email_verify",
    tag = "email",
    summary = "Verify the email address",
    request_body(content((VerifyRequest = "application/json"), (VerifyRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "The address is verified", body = crate::http::openapi::AnyObject),
    ),
)]
pub async fn verify(
    State(state): State<AppState>,
    client: Client,
    body: JsonOrForm<VerifyRequest>,
) -> ApiResult<Response> {
    let VerifyRequest { token, password } = body.value;
    let spent = match crate::service::email::verify(&state, &client, &token, password).await {
        Ok(spent) => spent,
        Err(e) if body.form => {
            // An unusable link, or the account's password missing or wrong.
            let title = if e.code == "invalid_token" {
                "Link not valid"
            } else {
                "Address not confirmed"
            };
            return Ok(error_page(
                crate::http::error::status_of(e.kind),
                title,
                &e.message,
            ));
        }
        Err(e) => return Err(e),
    };
    Ok(if body.form {
        page(
            "Email address confirmed",
            "<p>Thank you. New sign-ins will show this address as verified.</p>",
        )
    } else {
        Json(json!({"email_verified": true, "email": spent.email})).into_response()
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    #[schema(format = "email", max_length = 254, example = "ada@example.com")]
    email: String,
}

/// `POST /auth/password/forgot`: always the same 202, at once. The lookup
/// and the mail happen after the answer, so neither its content nor its
/// timing tells whether the account exists.
#[utoipa::path(
    post,
    path = "/auth/password/forgot",
    operation_id = "email_forgot",
    tag = "email",
    summary = "Ask for a password reset link",
    request_body(content((ForgotRequest = "application/json"), (ForgotRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 202, description = "Accepted, whether or not the account exists", body = crate::http::openapi::AnyObject),
    ),
)]
pub async fn forgot(
    State(state): State<AppState>,
    client: Client,
    body: JsonOrForm<ForgotRequest>,
) -> ApiResult<Response> {
    crate::service::recovery::request_reset(&state, &client, &body.value.email)?;
    let message = "If an account has this address, a mail with a reset link is on its way.";
    Ok(if body.form {
        let mut r = page("Check your mail", &format!("<p>{message}</p>"));
        *r.status_mut() = StatusCode::ACCEPTED;
        r
    } else {
        (
            StatusCode::ACCEPTED,
            Json(json!({"status": "accepted", "message": message})),
        )
            .into_response()
    })
}

/// `GET /auth/password/reset?token=`: the form the mailed link opens.
#[utoipa::path(
    get,
    path = "/auth/password/reset",
    operation_id = "email_reset_page",
    tag = "email",
    summary = "Password reset page (from the mailed link)",
    params(TokenQuery),
    responses(
        (status = 200, description = "A page whose form posts the token", content_type = "text/html", body = String),
    ),
)]
pub async fn reset_page(Query(q): Query<TokenQuery>) -> Response {
    page(
        "Choose a new password",
        &format!(
            "<form method=\"post\" action=\"/auth/password/reset\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <p><label for=\"new_password\">New password</label><br>\
             <input id=\"new_password\" name=\"new_password\" type=\"password\" \
             autocomplete=\"new-password\" minlength=\"{}\" required></p>\
             <button type=\"submit\">Set the new password</button></form>",
            escape(&q.token),
            password::MIN_PASSWORD_CHARS
        ),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    token: String,
    #[schema(
        min_length = 8,
        max_length = 1024,
        example = "correct horse battery staple"
    )]
    new_password: String,
}

/// `POST /auth/password/reset`: sets the password, ends every session,
/// signs nobody in.
#[utoipa::path(
    post,
    path = "/auth/password/reset",
    operation_id = "email_reset",
    tag = "email",
    summary = "Set a new password with a reset link",
    request_body(content((ResetRequest = "application/json"), (ResetRequest = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Password set; every session ended", body = crate::http::openapi::AnyObject),
    ),
)]
pub async fn reset(
    State(state): State<AppState>,
    client: Client,
    body: JsonOrForm<ResetRequest>,
) -> ApiResult<Response> {
    let form = body.form;
    let ResetRequest {
        token,
        new_password,
    } = body.value;
    match crate::service::recovery::reset_password(&state, &client, &token, new_password).await {
        Ok(()) if form => Ok(page(
            "Password changed",
            "<p>Your password is changed and every session was signed out. Sign in with the new password.</p>",
        )),
        Ok(()) => Ok(Json(json!({"status": "password_reset"})).into_response()),
        Err(e) if form => Ok(error_page(crate::http::error::status_of(e.kind), "Password not changed", &e.message)),
        Err(e) => Err(e),
    }
}
