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

use crate::domain::clock::Now;
use crate::domain::password;
use crate::domain::tokens::refresh_token_hash;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Authenticated, Client};
use crate::service::accounts::normalize_email;
use crate::service::email::{
    human_duration, link, new_token, notify_password_changed, send_verification,
};
use crate::service::mail::{escape, templates};
use crate::store::{AuditEvent, Outcome, TokenPurpose};
use crate::AppState;

/// Reset mails per account per hour at most; more requests are answered
/// the same but mail nothing (no mail-bombing a victim).
const RESET_MAILS_PER_HOUR: i64 = 3;

/// Password reset lookups in flight at most, per replica.
static FORGOT_WORK: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(64)));

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
    if auth.user.email_verified_at.is_some() {
        return Err(ApiError::new(
            crate::service::error::Kind::Conflict,
            "already_verified",
            "this email address is already verified",
        ));
    }
    if state.mailer.is_none() {
        return Err(mail_not_configured());
    }
    send_verification(&state, &auth.user, state.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "sent"}))).into_response())
}

fn mail_not_configured() -> ApiError {
    ApiError::new(
        crate::service::error::Kind::Conflict,
        "mail_not_configured",
        "this server does not send mail",
    )
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

fn invalid_link() -> ApiError {
    ApiError::bad_request(
        "invalid_token",
        "this link is invalid, used or expired; ask for a new one",
    )
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
    let now = state.now();
    let hash = refresh_token_hash(body.value.token.trim());
    if let Err(e) = password_holder(&state, &hash, body.value.password, now).await {
        return Ok(if body.form {
            error_page(
                crate::http::error::status_of(e.kind),
                "Address not confirmed",
                &e.message,
            )
        } else {
            e.into_response()
        });
    }
    let spent = state
        .store
        .spend_email_token(&hash, TokenPurpose::VerifyEmail, now.secs())
        .await
        .map_err(ApiError::internal)?;
    let Some(spent) = spent else {
        return Ok(if body.form {
            error_page(
                StatusCode::BAD_REQUEST,
                "Link not valid",
                &invalid_link().message,
            )
        } else {
            invalid_link().into_response()
        });
    };
    state
        .audit(
            AuditEvent::new(now.ms, "email_verified")
                .actor(&spent.user_id)
                .target(&spent.user_id)
                .email(&spent.email)
                .client(&client),
        )
        .await;
    Ok(if body.form {
        page(
            "Email address confirmed",
            "<p>Thank you. New sign-ins will show this address as verified.</p>",
        )
    } else {
        Json(json!({"email_verified": true, "email": spent.email})).into_response()
    })
}

/// Before a link first proves an address: the one confirming must also
/// hold the account's password (through the throttled check), so the owner
/// of a mailbox cannot be made to confirm an account an attacker registered
/// with it. An unknown or spent link passes here and fails at the spend.
async fn password_holder(
    state: &AppState,
    hash: &str,
    password: Option<String>,
    now: crate::domain::clock::Now,
) -> ApiResult<()> {
    let Some(live) = state
        .store
        .peek_email_token(hash, TokenPurpose::VerifyEmail, now.secs())
        .await
        .map_err(ApiError::internal)?
    else {
        return Ok(());
    };
    let Some(user) = state
        .store
        .user_by_id(&live.user_id)
        .await
        .map_err(ApiError::internal)?
        .filter(|u| u.has_password() && u.email_verified_at.is_none())
    else {
        return Ok(());
    };
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err(ApiError::bad_request(
            "password_required",
            "give the account's password to confirm its address",
        ));
    };
    let verified = crate::service::password_check::check(
        state,
        &user.email,
        Some(user.password_hash.clone()),
        password,
        now,
    )
    .await?;
    if !verified.ok {
        return Err(ApiError::forbidden("password is incorrect"));
    }
    Ok(())
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
    let email = normalize_email(&body.value.email)?;
    if state.mailer.is_none() {
        return Err(mail_not_configured());
    }
    let now = state.now();
    let worker = state.clone();
    // Bounded: a flood of requests must not pile up background work. Past
    // the bound the request is answered the same and dropped (logged).
    match FORGOT_WORK.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                if let Err(e) = mail_reset(&worker, &email, &client, now).await {
                    tracing::error!(error = %e.message, "password reset mail failed");
                }
                drop(permit);
            });
        }
        Err(_) => tracing::warn!("password reset requests over capacity; one dropped"),
    }
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

async fn mail_reset(state: &AppState, email: &str, client: &Client, now: Now) -> ApiResult<()> {
    let user = state
        .store
        .user_by_email(email)
        .await
        .map_err(ApiError::internal)?;
    let event = AuditEvent::new(now.ms, "password_reset_requested")
        .email(email)
        .client(client);
    let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
        state
            .audit(event.outcome(Outcome::Failure, "unknown_or_disabled_account"))
            .await;
        return Ok(());
    };
    let event = event.actor(&user.id).target(&user.id);
    let ttl = state.settings.mail.password_reset_ttl_secs;
    let (token, hash) = new_token()?;
    let created = state
        .store
        .create_email_token(
            &hash,
            &user,
            TokenPurpose::ResetPassword,
            now.secs(),
            now.secs() + ttl,
            now.secs() - 3600,
            RESET_MAILS_PER_HOUR,
        )
        .await
        .map_err(ApiError::internal)?;
    if !created {
        state
            .audit(event.outcome(Outcome::Denied, "too_many_mails"))
            .await;
        return Ok(());
    }
    let mail = templates::password_reset(
        &user.email,
        &link(state, "/auth/password/reset", &token),
        &human_duration(ttl),
    );
    crate::service::mail::send(state, mail)
        .await
        .map_err(ApiError::internal)?;
    state.audit(event).await;
    Ok(())
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
    match reset_password(&state, &client, body.value).await {
        Ok(()) if form => Ok(page(
            "Password changed",
            "<p>Your password is changed and every session was signed out. Sign in with the new password.</p>",
        )),
        Ok(()) => Ok(Json(json!({"status": "password_reset"})).into_response()),
        Err(e) if form => Ok(error_page(crate::http::error::status_of(e.kind), "Password not changed", &e.message)),
        Err(e) => Err(e),
    }
}

async fn reset_password(state: &AppState, client: &Client, req: ResetRequest) -> ApiResult<()> {
    let now = state.now();
    let hash = refresh_token_hash(req.token.trim());
    // Checked before the password, and spent only after it passed: a weak
    // choice does not burn the link.
    let live = state
        .store
        .peek_email_token(&hash, TokenPurpose::ResetPassword, now.secs())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(invalid_link)?;
    if let Some(reason) = password::weakness(&req.new_password, &live.email) {
        return Err(ApiError::new(
            crate::service::error::Kind::Unprocessable,
            "weak_password",
            reason,
        ));
    }
    let new_hash = state
        .hasher
        .hash(req.new_password)
        .await
        .map_err(ApiError::from)?;
    let now = state.now();
    let (spent, records) = state
        .store
        .reset_password(&hash, &new_hash, now.ms, state.revocation_expiry(now))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(invalid_link)?;
    state.published(records).await;
    state
        .store
        .clear_login_failures(&spent.email)
        .await
        .map_err(ApiError::internal)?;
    state
        .audit(
            AuditEvent::new(now.ms, "password_reset")
                .actor(&spent.user_id)
                .target(&spent.user_id)
                .email(&spent.email)
                .client(client)
                // The first proof of the mailbox removed the factors and
                // linked accounts set up before it.
                .meta(json!({"first_proof": spent.first_proof})),
        )
        .await;
    notify_password_changed(state, &spent.email, "by a reset link", client).await;
    Ok(())
}
