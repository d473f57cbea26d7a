//! The device authorization grant (RFC 8628): a device without a browser,
//! a CLI over SSH say, asks for a code pair; its user enters the short code
//! on the verification page, signed in as ever (second factor included),
//! sees which application asks for what, and approves or denies; the
//! device polls the token endpoint until then.

use serde::Serialize;

use super::authorize::{open_sealed_time, seal_time};
use super::client_auth::{self, Credentials};
use crate::domain::oauth::{
    display_user_code, normalize_user_code, pick_scopes, user_code, DEVICE_CODE,
};
use crate::domain::ratelimit::Rate;
use crate::domain::tokens::{random_b64, random_bytes, refresh_token_hash};
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error, Kind, Result};
use crate::store::{Approval, ApprovedDevice, AuditEvent, NewDeviceCode, Outcome, Poll};
use crate::AppState;

/// The verification page (RFC 8628 §3.3).
pub const DEVICE_PATH: &str = "/auth/ui/device";
/// Codes one account may enter: 10 per 10 minutes.
const LOOKUPS: Rate = Rate {
    limit: 10,
    period_ms: 600_000,
};
/// How long a device's request waits for its user.
const DEVICE_CODE_TTL_SECS: i64 = 600;

/// RFC 8628 §3.2.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceAuthorization {
    pub device_code: String,
    /// What the user types, `BCDF-GHJK`.
    pub user_code: String,
    pub verification_uri: String,
    /// The page with the code filled in (for a QR code, say).
    pub verification_uri_complete: String,
    pub expires_in: i64,
    /// Seconds to wait between polls.
    pub interval: i64,
}

fn invalid_scope(message: String) -> Error {
    Error::bad_request("invalid_scope", message)
}

/// A device's request (RFC 8628 §3.1): the client (public, by its id; or
/// authenticated), the scopes (by default all it may ask for) and at most
/// one resource it is registered for.
pub async fn authorize(
    state: &AppState,
    client: &Client,
    creds: &Credentials,
    scope: Option<&str>,
    resource: Option<&str>,
) -> Result<DeviceAuthorization> {
    let oauth_client = client_auth::authenticate(state, creds).await?;
    if !oauth_client.may_use(DEVICE_CODE) {
        return Err(Error::bad_request(
            "unauthorized_client",
            "this client is not registered for the device_code grant",
        ));
    }
    let grantable: Vec<&str> = oauth_client.scopes.iter().map(String::as_str).collect();
    let scope = pick_scopes(scope, &grantable)
        .map_err(|s| invalid_scope(format!("{s}: not a scope this client may ask for")))?;
    if scope.is_empty() {
        return Err(invalid_scope("no scope to ask for".into()));
    }
    if resource.is_some_and(|r| !oauth_client.audiences.iter().any(|a| a == r)) {
        return Err(Error::bad_request(
            "invalid_target",
            "resource: not a resource this client may ask for",
        ));
    }
    let now = state.now();
    let device_code = random_b64(32)?;
    let scope = scope.join(" ");
    // A user code is short: a collision with a live one draws again.
    for _ in 0..4 {
        let random = random_bytes(32)?;
        let Some(code) = user_code(&random) else {
            continue;
        };
        let created = state
            .store
            .create_device_code(&NewDeviceCode {
                device_code_hash: &refresh_token_hash(&device_code),
                user_code_hash: &refresh_token_hash(&code),
                client_id: &oauth_client.id,
                scope: &scope,
                resource,
                created_at_ms: now.ms,
                expires_at: now.secs() + DEVICE_CODE_TTL_SECS,
                poll_interval: state.settings.device_poll_interval,
                requested_ip: client.ip.as_deref(),
            })
            .await?;
        if !created {
            continue;
        }
        state
            .audit(
                AuditEvent::new(now.ms, "device_authorization")
                    .client(client)
                    .meta(serde_json::json!({"client_id": oauth_client.id, "scope": scope})),
            )
            .await;
        let page = format!("{}{DEVICE_PATH}", state.settings.issuer_url);
        let shown = display_user_code(&code);
        return Ok(DeviceAuthorization {
            device_code,
            verification_uri_complete: format!("{page}?user_code={shown}"),
            verification_uri: page,
            user_code: shown,
            expires_in: DEVICE_CODE_TTL_SECS,
            interval: state.settings.device_poll_interval,
        });
    }
    Err(Error::internal("no free user code"))
}

/// A device's request as its user is shown it, before answering.
#[derive(Debug)]
pub struct DeviceRequest {
    pub user_code: String,
    pub client_id: String,
    pub client_name: String,
    pub scope: Vec<String>,
    pub resource: Option<String>,
    /// Where and when the device asked (Unix seconds): the user can tell
    /// a request of theirs from one an attacker relayed.
    pub requested_ip: Option<String>,
    pub requested_at: i64,
    /// The answer form's token: for this browser session and this code.
    pub token: String,
}

fn unknown_code() -> Error {
    Error::bad_request(
        "invalid_user_code",
        "that code is not one we gave out, or it has expired or been answered: \
         check it on the device, or start again there",
    )
}

fn answer_aad(auth: &Authenticated, code: &str) -> String {
    format!(
        "device-answer:{}:{}",
        auth.session.id,
        refresh_token_hash(code)
    )
}

/// The pending request a typed user code names, for the signed-in user to
/// answer. Guessing codes is held back by the rate limit of the page; each
/// miss is audited (without what was typed).
pub async fn lookup(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    typed: &str,
) -> Result<DeviceRequest> {
    let now = state.now();
    // Per account too, not only per IP (the page's class): an account used
    // from many addresses still tries few codes.
    let verdict = state
        .limiter
        .check(&format!("device-code:{}", auth.user.id), LOOKUPS, now.ms)
        .await;
    if !verdict.allowed {
        let mut e = Error::new(
            Kind::TooMany,
            "too_many_codes",
            "too many codes entered: wait a few minutes, then enter the one your device shows",
        );
        e.retry_after = Some(u64::try_from((verdict.reset_ms + 999) / 1000).unwrap_or(60));
        return Err(e);
    }
    let pending = match normalize_user_code(typed) {
        Some(code) => state
            .store
            .pending_device(&refresh_token_hash(&code), now.secs())
            .await?
            .map(|p| (code, p)),
        None => None,
    };
    let Some((code, pending)) = pending else {
        state
            .audit(
                AuditEvent::new(now.ms, "device_code_miss")
                    .by(auth)
                    .client(client)
                    .outcome(Outcome::Failure, "invalid_user_code"),
            )
            .await;
        return Err(unknown_code());
    };
    let oauth_client = state
        .store
        .client(&pending.client_id)
        .await?
        .ok_or_else(unknown_code)?;
    Ok(DeviceRequest {
        user_code: display_user_code(&code),
        token: seal_time(state, &answer_aad(auth, &code), now.secs())?,
        client_id: oauth_client.id,
        client_name: oauth_client.name,
        scope: pending.scope.split(' ').map(str::to_string).collect(),
        resource: pending.resource,
        requested_ip: pending.requested_ip,
        requested_at: pending.created_at,
    })
}

/// The user's answer. Allowed: the device's next poll gets tokens for this
/// user, as signed in here (`amr`, `auth_time`); a third-party client's
/// scopes are remembered as consented, as at the authorization endpoint.
pub async fn answer(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    typed: &str,
    allow: bool,
    token: &str,
) -> Result<()> {
    let code = normalize_user_code(typed).ok_or_else(unknown_code)?;
    if open_sealed_time(state, &answer_aad(auth, &code), token).is_none() {
        return Err(Error::bad_request(
            "invalid_request",
            "this form is not the one the issuer showed you, or it is too old: enter the code again",
        ));
    }
    let now = state.now();
    let hash = refresh_token_hash(&code);
    let pending = state
        .store
        .pending_device(&hash, now.secs())
        .await?
        .ok_or_else(unknown_code)?;
    let approved = allow.then_some(Approval {
        user_id: &auth.user.id,
        session_id: &auth.session.id,
        amr: &auth.session.amr,
        auth_time: auth.session.auth_time,
    });
    if !state
        .store
        .decide_device(&hash, approved, now.secs())
        .await?
    {
        return Err(unknown_code());
    }
    if allow {
        super::consent::remember(
            state,
            &auth.user.id,
            &pending.client_id,
            pending.scope.split(' '),
            now.secs(),
        )
        .await?;
    }
    let event = AuditEvent::new(now.ms, "device_authorization_answered")
        .by(auth)
        .client(client)
        .meta(serde_json::json!({"client_id": pending.client_id, "scope": pending.scope}));
    let event = if allow {
        event
    } else {
        event.outcome(Outcome::Denied, "access_denied")
    };
    state.audit(event).await;
    Ok(())
}

/// A device's poll at the token endpoint (RFC 8628 §3.4, §3.5): the
/// approved request, once; else the error the device acts on.
pub async fn poll(
    state: &AppState,
    client_id: &str,
    device_code: Option<&str>,
) -> Result<ApprovedDevice> {
    let device_code = device_code
        .ok_or_else(|| Error::bad_request("invalid_request", "device_code is missing"))?;
    let now = state.now();
    let polled = state
        .store
        .poll_device(&refresh_token_hash(device_code), client_id, now.ms)
        .await?;
    let (code, message) = match polled {
        // Only while the browser session that approved lives: signing out
        // everywhere, a password change or an admin's action in between
        // ends the approval too.
        Poll::Approved(approved) => {
            let live = state
                .store
                .session(&approved.approved_by_session)
                .await?
                .is_some_and(|s| s.user_id == approved.user_id && s.is_live(now.secs()));
            if live {
                return Ok(approved);
            }
            (
                "invalid_grant",
                "the approval ended with the session that gave it: start again",
            )
        }
        Poll::Pending => ("authorization_pending", "the user has not answered yet"),
        Poll::SlowDown => (
            "slow_down",
            "polled too soon: wait 5 seconds more between polls",
        ),
        Poll::Denied => ("access_denied", "the user denied the request"),
        Poll::Expired => ("expired_token", "the device code has expired: start again"),
        Poll::Invalid => (
            "invalid_grant",
            "the device code is invalid or was already used",
        ),
    };
    Err(Error::bad_request(code, message))
}
