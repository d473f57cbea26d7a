//! Accounts and passwords: registration, password login, password change.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::sessions::clear_cookie_response;
use crate::domain::password;
use crate::domain::tokens::new_id;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::grant;
use crate::store::{AuditEvent, CreateUserError, Outcome, User};
use crate::AppState;
const MAX_EMAIL_LEN: usize = 254;
const MAX_NAME_CHARS: usize = 200;

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

pub fn normalize_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_LEN
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        // A bare mailbox as mail servers parse it: never `Name <other@x>`,
        // which would send this account's mail somewhere else.
        && email.parse::<lettre::Address>().is_ok()
        && !email.contains(['<', '>', '"', ',', ';']);
    if valid {
        Ok(email)
    } else {
        Err(ApiError::new(
            crate::service::error::Kind::Unprocessable,
            "invalid_email",
            "email address is not valid",
        ))
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
    let email = normalize_email(&req.email)?;
    if let Some(reason) = password::weakness(&req.password, &email) {
        return Err(ApiError::new(
            crate::service::error::Kind::Unprocessable,
            "weak_password",
            reason,
        ));
    }
    let name = req
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(ApiError::new(
            crate::service::error::Kind::Unprocessable,
            "invalid_name",
            format!("name must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    let password_hash = state
        .hasher
        .hash(req.password)
        .await
        .map_err(ApiError::from)?;
    let now = state.now().secs();
    let user = User {
        id: new_id(),
        email,
        name,
        password_hash,
        roles: Vec::new(),
        created_at: now,
        password_changed_at: now,
        disabled_at: None,
        token_generation: 0,
        email_verified_at: None,
        avatar_url: None,
        metadata: "{}".into(),
        admin_metadata: "{}".into(),
    };
    let quiet = state.settings.quiet_registration;
    match state.store.create_user(&user).await {
        Ok(()) => {}
        Err(CreateUserError::EmailTaken) if quiet => {
            // The same answer as for a new account; the owner hears of it,
            // at most a few times an hour (no mailbox flooding).
            let rate = crate::domain::ratelimit::Rate {
                limit: 3,
                period_ms: 3_600_000,
            };
            let key = format!("account-exists:{}", user.email);
            let verdict = state.limiter.check(&key, rate, state.now().ms).await;
            if verdict.allowed {
                let mail = crate::service::mail::templates::account_exists(&user.email);
                if let Err(e) = state.send_mail(mail).await {
                    tracing::error!(error = %e, "account-exists notice not queued");
                }
            }
            return Ok(quiet_answer());
        }
        Err(CreateUserError::EmailTaken) => {
            return Err(ApiError::new(
                crate::service::error::Kind::Conflict,
                "email_taken",
                "an account with this email already exists",
            ))
        }
        Err(CreateUserError::Db(e)) => return Err(ApiError::internal(e)),
    }
    state
        .audit(
            AuditEvent::new(now * 1000, "register")
                .user(&user)
                .client(&client),
        )
        .await;
    // The account exists whether or not the mail could be queued; the user
    // can ask for another.
    if let Err(e) = super::email::send_verification(&state, &user, state.now()).await {
        tracing::error!(error = %e.message, "verification mail not queued");
    }
    if quiet {
        return Ok(quiet_answer());
    }
    Ok((StatusCode::CREATED, Json(UserView::from(&user))).into_response())
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
        (status = 200, description = "Signed in: an access token, and a refresh token (also set as the `__Host-refresh_token` cookie)", body = crate::service::grant::TokenResponse),
        (status = 401, description = "Wrong credentials, or `mfa_required` with an MFA ticket", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let email = req.email.trim().to_lowercase();
    let now = state.now();
    if req.password.chars().count() > password::MAX_PASSWORD_CHARS {
        return Err(invalid_credentials());
    }
    // After repeated failures every attempt for this name waits, whoever
    // makes it and whether or not the account exists; reserved before the
    // password is checked, so a right guess during the delay tells nothing
    // and concurrent guesses cannot share one open moment.
    let user = state
        .store
        .user_by_email(&email)
        .await
        .map_err(ApiError::internal)?;
    let verified = crate::service::password_check::check(
        &state,
        &email,
        // An account without a password (made through GitHub) costs the
        // same dummy hash as an unknown one, so neither shows.
        // A disabled one too: a right password must not be told from a
        // wrong one, not even by the delay it leaves.
        user.as_ref()
            .filter(|u| u.has_password() && u.disabled_at.is_none())
            .map(|u| u.password_hash.clone()),
        req.password.clone(),
        now,
    )
    .await?;
    // A disabled account answers as a wrong password does, right password
    // or not: its answer must not tell whether the guess was right.
    if let Some(u) = user.as_ref().filter(|u| u.disabled_at.is_some()) {
        state.metrics.login("disabled");
        state
            .audit(
                AuditEvent::new(now.ms, "login_disabled")
                    .user(u)
                    .client(&client)
                    .outcome(Outcome::Denied, "account_disabled"),
            )
            .await;
        return Err(invalid_credentials());
    }
    let Some(user) = user.filter(|_| verified.ok) else {
        // Already counted when the attempt was reserved.
        state.metrics.login("failure");
        state
            .store
            .record_audit(
                &AuditEvent::new(now.ms, "login_failure")
                    .email(&email)
                    .client(&client)
                    .outcome(Outcome::Failure, "invalid_credentials"),
            )
            .await
            .map_err(ApiError::internal)?;
        return Err(invalid_credentials());
    };
    if verified.needs_rehash && user.disabled_at.is_none() {
        upgrade_hash_later(&state, &user, req.password);
    }
    let response = grant::start_session(&state, &client, &user, "pwd", now).await?;
    // The count clears only when the sign-in is complete: a right password
    // before a second factor must not buy fresh guesses at the code.
    if response.status().is_success() {
        state
            .store
            .clear_login_failures(&email)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(response)
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "email or password is incorrect")
}

/// Rehashes a legacy or weaker hash without making the login wait for it.
fn upgrade_hash_later(state: &AppState, user: &User, password: String) {
    let state = state.clone();
    let user_id = user.id.clone();
    let old_hash = user.password_hash.clone();
    tokio::spawn(async move {
        let result = match state.hasher.hash(password).await {
            Ok(new_hash) => state
                .store
                .upgrade_password_hash(&user_id, &old_hash, &new_hash)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(true) => tracing::info!(user_id, "upgraded password hash to argon2id"),
            Ok(false) => {}
            Err(e) => tracing::warn!(user_id, error = %e, "password hash upgrade failed"),
        }
    });
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
    let verified = crate::service::password_check::check(
        &state,
        &auth.user.email,
        Some(auth.user.password_hash.clone()).filter(|_| auth.user.has_password()),
        req.current_password,
        state.now(),
    )
    .await?;
    if !verified.ok {
        return Err(ApiError::forbidden("current password is incorrect"));
    }
    if let Some(reason) = password::weakness(&req.new_password, &auth.user.email) {
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
    let records = state
        .store
        .change_password(
            &auth.user.id,
            &new_hash,
            now.ms,
            state.revocation_expiry(now),
        )
        .await
        .map_err(ApiError::internal)?;
    state.published(records).await;
    state
        .audit(
            AuditEvent::new(now.ms, "password_changed")
                .user(&auth.user)
                .session(&auth.session.id)
                .client(&client),
        )
        .await;
    super::email::notify_password_changed(
        &state,
        &auth.user.email,
        "from account settings",
        &client,
    )
    .await;
    Ok(clear_cookie_response())
}
