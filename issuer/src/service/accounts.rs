//! Accounts and passwords: the address rule, and password sign-in.

use crate::domain::password;
use crate::domain::tokens::new_id;
use crate::service::context::Client;
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::service::grant::{self, SignIn};
use crate::store::{AuditEvent, CreateUserError, Outcome, User};
use crate::AppState;

const MAX_EMAIL_LEN: usize = 254;

/// An address as accounts hold it (trimmed, lower case), if it is one.
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
            Kind::Unprocessable,
            "invalid_email",
            "email address is not valid",
        ))
    }
}

/// What registering did.
pub enum Registered {
    Created(Box<User>),
    /// `--quiet-registration`: the same whether or not the address was new.
    Quiet,
}

const MAX_NAME_CHARS: usize = 200;

/// Creates an account (and mails its verification link).
pub async fn register(
    state: &AppState,
    client: &Client,
    email: &str,
    password: String,
    name: Option<String>,
) -> ApiResult<Registered> {
    let email = normalize_email(email)?;
    if let Some(reason) = password::weakness(&password, &email) {
        return Err(ApiError::new(Kind::Unprocessable, "weak_password", reason));
    }
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(ApiError::new(
            Kind::Unprocessable,
            "invalid_name",
            format!("name must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    let password_hash = state.hasher.hash(password).await.map_err(ApiError::from)?;
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
                if let Err(e) = crate::service::mail::send(state, mail).await {
                    tracing::error!(error = %e, "account-exists notice not queued");
                }
            }
            return Ok(Registered::Quiet);
        }
        Err(CreateUserError::EmailTaken) => {
            return Err(ApiError::new(
                Kind::Conflict,
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
                .client(client),
        )
        .await;
    // The account exists whether or not the mail could be queued; the user
    // can ask for another.
    if let Err(e) = crate::service::email::send_verification(state, &user, state.now()).await {
        tracing::error!(error = %e.message, "verification mail not queued");
    }
    if quiet {
        return Ok(Registered::Quiet);
    }
    Ok(Registered::Created(Box::new(user)))
}

/// Signs in with a password: tokens, or the second factor the account
/// needs. Every attempt for the name is reserved before the check, so a
/// delay cannot be raced.
pub async fn login(
    state: &AppState,
    client: &Client,
    email: &str,
    password: String,
) -> ApiResult<SignIn> {
    let email = email.trim().to_lowercase();
    let now = state.now();
    if password.chars().count() > password::MAX_PASSWORD_CHARS {
        return Err(invalid_credentials());
    }
    // After repeated failures every attempt for this name waits, whoever
    // makes it and whether or not the account exists; reserved before the
    // password is checked, so a right guess during the delay tells nothing
    // and concurrent guesses cannot share one open moment.
    let user = state.store.user_by_email(&email).await?;
    let verified = crate::service::password_check::check(
        state,
        &email,
        // An account without a password (made through GitHub) costs the
        // same dummy hash as an unknown one, so neither shows.
        // A disabled one too: a right password must not be told from a
        // wrong one, not even by the delay it leaves.
        user.as_ref()
            .filter(|u| u.has_password() && u.disabled_at.is_none())
            .map(|u| u.password_hash.clone()),
        password.clone(),
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
                    .client(client)
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
                    .client(client)
                    .outcome(Outcome::Failure, "invalid_credentials"),
            )
            .await?;
        return Err(invalid_credentials());
    };
    if verified.needs_rehash && user.disabled_at.is_none() {
        upgrade_hash_later(state, &user, password);
    }
    let signed_in = grant::start_session(state, client, &user, "pwd", now).await?;
    // The count clears only when the sign-in is complete: a right password
    // before a second factor must not buy fresh guesses at the code.
    if matches!(signed_in, SignIn::Tokens(_)) {
        state.store.clear_login_failures(&email).await?;
    }
    Ok(signed_in)
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

/// Changes the password; every session ends, this one included.
pub async fn change_password(
    state: &AppState,
    client: &Client,
    auth: &crate::service::context::Authenticated,
    current_password: String,
    new_password: String,
) -> ApiResult<()> {
    let verified = crate::service::password_check::check(
        state,
        &auth.user.email,
        Some(auth.user.password_hash.clone()).filter(|_| auth.user.has_password()),
        current_password,
        state.now(),
    )
    .await?;
    if !verified.ok {
        return Err(ApiError::forbidden("current password is incorrect"));
    }
    if let Some(reason) = password::weakness(&new_password, &auth.user.email) {
        return Err(ApiError::new(Kind::Unprocessable, "weak_password", reason));
    }
    let new_hash = state
        .hasher
        .hash(new_password)
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
        .await?;
    let event = AuditEvent::new(now.ms, "password_changed")
        .user(&auth.user)
        .session(&auth.session.id)
        .client(client);
    state.sessions_ended(records, event).await;
    crate::service::email::notify_password_changed(
        state,
        &auth.user.email,
        "from account settings",
        client,
    )
    .await;
    Ok(())
}
