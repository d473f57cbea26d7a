//! Passkeys (WebAuthn, `webauthn-rs`): registration, passwordless sign-in
//! with discoverable credentials, passkeys as the second factor after a
//! password, and list / rename / delete. Ceremony state lives in the
//! database, so any replica can finish a ceremony another started.
//!
//! A passkey asserts user verification (PIN or biometric on the device), so
//! it counts as two factors: `amr` `hwk` (or `swk` for a synced passkey)
//! plus `mfa`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::config::ServeArgs;
use crate::domain::mfa as core;
use crate::domain::tokens::{new_id, refresh_token_hash};
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::service::grant::{self, SignIn};
use crate::store::{AuditEvent, Outcome, StoredPasskey, Which};
use crate::AppState;

/// How long a ceremony may take.
const CEREMONY_SECS: i64 = 300;
const MAX_NAME_CHARS: usize = 64;
const REGISTER: &str = "register";
const AUTHENTICATE: &str = "authenticate";

/// The relying party, from the settings; `None` when the issuer URL's host
/// is not a domain and no RP id is set (WebAuthn binds keys to a domain).
pub fn relying_party(settings: &ServeArgs) -> anyhow::Result<Option<Webauthn>> {
    let origin = settings
        .webauthn_origin
        .clone()
        .unwrap_or_else(|| settings.issuer_url.clone());
    let origin = Url::parse(&origin).map_err(|e| anyhow::anyhow!("--webauthn-origin: {e}"))?;
    let rp_id = match (&settings.webauthn_rp_id, origin.domain()) {
        (Some(id), _) => id.clone(),
        (None, Some(d)) => d.to_string(),
        (None, _) => {
            tracing::warn!(
                "passkeys are off: the issuer URL has no domain name (set --webauthn-rp-id)"
            );
            return Ok(None);
        }
    };
    // On localhost (the demo, tests) the pages' port is whatever the proxy
    // bound; browsers scope passkeys to the host, not the port.
    let localhost = origin.host_str() == Some("localhost");
    let rp = WebauthnBuilder::new(&rp_id, &origin)
        .map_err(|e| anyhow::anyhow!("WebAuthn relying party {rp_id} at {origin}: {e}"))?
        .allow_any_port(localhost)
        .rp_name("DevMentor")
        .build()
        .map_err(|e| anyhow::anyhow!("WebAuthn relying party: {e}"))?;
    Ok(Some(rp))
}

fn rp(state: &AppState) -> ApiResult<&Webauthn> {
    state.webauthn.as_deref().ok_or_else(|| {
        ApiError::new(
            Kind::Conflict,
            "passkeys_not_configured",
            "this server has no WebAuthn relying party (set --webauthn-rp-id)",
        )
    })
}

fn bad_credential(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "invalid_credential",
        format!("the passkey response was refused: {e}"),
    )
}

/// Stores a ceremony's state for whichever replica finishes it; its id.
/// `client`: whom the per-client cap counts (a user, or a client network).
async fn begin_ceremony(
    state: &AppState,
    kind: &str,
    user_id: Option<&str>,
    client: &str,
    ceremony: &impl serde::Serialize,
    now: crate::domain::clock::Now,
) -> ApiResult<String> {
    let id = new_id();
    let stored = state
        .store
        .put_ceremony(
            &id,
            kind,
            user_id,
            client,
            &serde_json::to_string(ceremony).map_err(ApiError::internal)?,
            now.secs(),
            now.secs() + CEREMONY_SECS,
        )
        .await?;
    match stored {
        crate::store::Ceremony::Stored => {}
        crate::store::Ceremony::Full => return Err(busy()),
    }
    Ok(id)
}

fn busy() -> ApiError {
    let mut e = ApiError::new(
        Kind::Unavailable,
        "busy",
        "too many passkey ceremonies under way; retry shortly",
    );
    e.retry_after = Some(5);
    e
}

fn expired_ceremony() -> ApiError {
    ApiError::bad_request(
        "invalid_ceremony",
        "the ceremony is unknown, finished or expired; start again",
    )
}

fn user_uuid(user_id: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(user_id).map_err(|_| {
        ApiError::new(
            Kind::Conflict,
            "passkeys_unavailable",
            "this account's id cannot name a passkey user",
        )
    })
}

/// Whether the authenticator said the key may be synced (backup eligible).
fn passkey_is_synced(pk: &Passkey) -> bool {
    serde_json::to_value(pk)
        .ok()
        .and_then(|v| v.pointer("/cred/backup_eligible").and_then(|b| b.as_bool()))
        .unwrap_or(false)
}

fn cred_id_of(pk: &Passkey) -> String {
    URL_SAFE_NO_PAD.encode(pk.cred_id().as_ref() as &[u8])
}

// The browser's answer to a registration ceremony (what its script posts).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    pub ceremony_id: String,
    /// The browser's `PublicKeyCredential` from `navigator.credentials.create()`.
    #[schema(value_type = Object)]
    pub credential: RegisterPublicKeyCredential,
    #[serde(default)]
    pub name: Option<String>,
}

// The browser's answer to a sign-in ceremony (a plain comment: a doc
// comment would change the published schema).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    pub ceremony_id: String,
    /// The browser's `PublicKeyCredential` from `navigator.credentials.get()`.
    #[schema(value_type = Object)]
    pub credential: PublicKeyCredential,
    #[serde(default)]
    pub mfa_ticket: Option<String>,
}

/// A ceremony under way: its id, and the options the browser passes to
/// `navigator.credentials`.
#[derive(Debug, Serialize)]
pub struct Started {
    pub ceremony_id: String,
    pub options: serde_json::Value,
}

/// Options for `navigator.credentials.create`, asking for a discoverable
/// credential so the passkey can also sign in without a password.
pub async fn register_start(state: &AppState, auth: &Authenticated) -> ApiResult<Started> {
    let rp = rp(state)?;
    let now = state.now();
    crate::service::factors::require_recent(state, auth, now).await?;
    let existing = state.store.passkeys_of(&auth.user.id).await?;
    let exclude = existing
        .iter()
        .filter_map(|p| serde_json::from_str::<Passkey>(&p.passkey).ok())
        .map(|p| p.cred_id().clone())
        .collect::<Vec<_>>();
    let (options, reg) = rp
        .start_passkey_registration(
            user_uuid(&auth.user.id)?,
            &auth.user.email,
            auth.user.name.as_deref().unwrap_or(&auth.user.email),
            Some(exclude),
        )
        .map_err(ApiError::internal)?;
    // webauthn-rs asks for a non-discoverable credential; passwordless
    // sign-in needs a discoverable one.
    let mut options = serde_json::to_value(&options).map_err(ApiError::internal)?;
    if let Some(sel) = options
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(|v| v.as_object_mut())
    {
        sel.insert("residentKey".into(), json!("required"));
        sel.insert("requireResidentKey".into(), json!(true));
    }
    let owner = format!("user:{}", auth.user.id);
    let id = begin_ceremony(state, REGISTER, Some(&auth.user.id), &owner, &reg, now).await?;
    Ok(Started {
        ceremony_id: id,
        options,
    })
}

fn valid_name(name: Option<&str>) -> ApiResult<String> {
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("Passkey");
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::new(
            Kind::Unprocessable,
            "invalid_name",
            format!("name: at most {MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(name.to_string())
}

/// A passkey as its owner sees it.
#[derive(Debug, Serialize)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// Registers the passkey a ceremony created; the first second factor of the
/// account ends its other (one-factor) sessions.
pub async fn register_finish(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    ceremony_id: &str,
    credential: &RegisterPublicKeyCredential,
    name: Option<&str>,
) -> ApiResult<PasskeyView> {
    let rp = rp(state)?;
    let now = state.now();
    crate::service::factors::require_recent(state, auth, now).await?;
    let name = valid_name(name)?;
    let had_factor = state.store.mfa_status(&auth.user.id).await?.any();
    let (owner, reg) = state
        .store
        .take_ceremony(ceremony_id, REGISTER, now.secs())
        .await?
        .ok_or_else(expired_ceremony)?;
    if owner.as_deref() != Some(auth.user.id.as_str()) {
        return Err(expired_ceremony());
    }
    let reg: PasskeyRegistration = serde_json::from_str(&reg).map_err(ApiError::internal)?;
    let passkey = rp
        .finish_passkey_registration(credential, &reg)
        .map_err(bad_credential)?;
    let cred_id = cred_id_of(&passkey);
    let added = state
        .store
        .add_passkey(&StoredPasskey {
            cred_id: cred_id.clone(),
            user_id: auth.user.id.clone(),
            name: name.clone(),
            passkey: serde_json::to_string(&passkey).map_err(ApiError::internal)?,
            created_at: now.secs(),
            last_used_at: None,
        })
        .await?;
    if !added {
        return Err(ApiError::new(
            Kind::Conflict,
            "passkey_not_added",
            format!(
                "the passkey is registered already, or the account has {} passkeys",
                crate::store::MAX_PASSKEYS
            ),
        ));
    }
    if !had_factor {
        let word = if passkey_is_synced(&passkey) {
            "swk"
        } else {
            "hwk"
        };
        let session = Some(&auth.session);
        crate::service::factors::first_factor_added(
            state,
            &auth.user,
            session,
            word,
            Some(&cred_id),
            now,
        )
        .await?;
    }
    crate::service::factors::factor_changed(
        state,
        auth,
        client,
        AuditEvent::new(now.ms, "passkey_added").meta(json!({"credential": cred_id, "name": name})),
        &format!("A passkey ({name}) was added to your account."),
    )
    .await;
    Ok(PasskeyView {
        id: cred_id,
        name,
        created_at: now.secs(),
        last_used_at: None,
    })
}

/// The caller's passkeys.
pub async fn list(state: &AppState, auth: &Authenticated) -> ApiResult<Vec<PasskeyView>> {
    let keys = state.store.passkeys_of(&auth.user.id).await?;
    Ok(keys
        .into_iter()
        .map(|p| PasskeyView {
            id: p.cred_id,
            name: p.name,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        })
        .collect())
}

/// Renames one of the caller's passkeys; the name it now has.
pub async fn rename(
    state: &AppState,
    auth: &Authenticated,
    id: &str,
    name: &str,
) -> ApiResult<String> {
    let name = valid_name(Some(name))?;
    let found = state.store.rename_passkey(&auth.user.id, id, &name).await?;
    if !found {
        return Err(ApiError::not_found("no such passkey"));
    }
    Ok(name)
}

/// Removes a passkey (needs a recent authentication); the sessions it
/// opened end with it.
pub async fn delete(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    id: &str,
) -> ApiResult<()> {
    let now = state.now();
    crate::service::factors::require_recent(state, auth, now).await?;
    let found = state.store.delete_passkey(&auth.user.id, id).await?;
    if !found {
        return Err(ApiError::not_found("no such passkey"));
    }
    // The sessions it opened end with it (this one, which just proved a
    // recent authentication, stays).
    let which = Which::OpenedByBut(id, &auth.session.id);
    crate::service::factors::end_sessions_of_factor(state, &auth.user.id, which, now).await?;
    crate::service::factors::factor_changed(
        state,
        auth,
        client,
        AuditEvent::new(now.ms, "passkey_removed").meta(json!({"credential": id})),
        "A passkey was removed from your account.",
    )
    .await;
    Ok(())
}

/// Options for `navigator.credentials.get` with discoverable credentials:
/// any passkey of this site may answer. The finish decides whose it is
/// (and, after a password, that it is that user's).
pub async fn login_start(state: &AppState, client: &Client) -> ApiResult<Started> {
    let rp = rp(state)?;
    let now = state.now();
    let (mut options, auth_state) = rp
        .start_discoverable_authentication()
        .map_err(ApiError::internal)?;
    // A sign-in button, not autofill: the browser shows its passkey dialog.
    options.mediation = None;
    let from = crate::domain::ratelimit::client_key(
        client.ip.as_deref().unwrap_or("unknown"),
        state.settings.rate_limit_ipv6_prefix,
    );
    let id = begin_ceremony(state, AUTHENTICATE, None, &from, &auth_state, now).await?;
    Ok(Started {
        ceremony_id: id,
        options: serde_json::to_value(&options).map_err(ApiError::internal)?,
    })
}

/// Checks a passkey assertion against its ceremony and, when given, the
/// user it must belong to. Returns the user, the `amr` word (`hwk`, or
/// `swk` for a synced passkey) and the credential id. Spends the ceremony
/// whatever the outcome.
pub async fn verify_assertion(
    state: &AppState,
    client: &Client,
    ceremony_id: &str,
    credential: &PublicKeyCredential,
    expected_user: Option<&str>,
    now: crate::domain::clock::Now,
) -> ApiResult<(crate::store::User, &'static str, String)> {
    let rp = rp(state)?;
    let refused = || ApiError::unauthorized("invalid_credential", "the passkey was not accepted");
    let (_, auth_state) = state
        .store
        .take_ceremony(ceremony_id, AUTHENTICATE, now.secs())
        .await?
        .ok_or_else(expired_ceremony)?;
    let auth_state: DiscoverableAuthentication =
        serde_json::from_str(&auth_state).map_err(ApiError::internal)?;
    let (user_uuid, cred_id) = rp
        .identify_discoverable_authentication(credential)
        .map_err(|_| refused())?;
    let cred_id = URL_SAFE_NO_PAD.encode(cred_id);
    let user_id = user_uuid.to_string();
    if expected_user.is_some_and(|u| u != user_id) {
        return Err(refused());
    }
    let user = state
        .store
        .user_by_id(&user_id)
        .await?
        .ok_or_else(refused)?;
    let keys = state.store.passkeys_of(&user.id).await?;
    let Some(stored) = keys.iter().find(|k| k.cred_id == cred_id) else {
        return Err(refused());
    };
    let mut passkey: Passkey = serde_json::from_str(&stored.passkey).map_err(ApiError::internal)?;
    let result = match rp.finish_discoverable_authentication(
        credential,
        auth_state,
        &[DiscoverableKey::from(&passkey)],
    ) {
        Ok(r) => r,
        Err(e) => {
            state
                .audit(
                    AuditEvent::new(now.ms, "passkey_failure")
                        .user(&user)
                        .client(client)
                        .outcome(Outcome::Failure, "invalid_credential")
                        .meta(json!({"credential": cred_id, "detail": e.to_string()})),
                )
                .await;
            return Err(refused());
        }
    };
    let updated = (passkey.update_credential(&result) == Some(true))
        .then(|| serde_json::to_string(&passkey))
        .transpose()
        .map_err(ApiError::internal)?;
    state
        .store
        .passkey_used(&cred_id, updated.as_deref(), now.secs())
        .await?;
    let word = if result.backup_eligible() {
        "swk"
    } else {
        "hwk"
    };
    Ok((user, word, cred_id))
}

/// A passkey sign-in. With a ticket, the passkey completes that sign-in as
/// its second factor and must be that user's.
pub async fn login_finish(
    state: &AppState,
    client: &Client,
    ceremony_id: &str,
    credential: &PublicKeyCredential,
    mfa_ticket: Option<&str>,
) -> ApiResult<SignIn> {
    let now = state.now();
    // A ticket names the user the passkey must belong to.
    let ticket = match mfa_ticket {
        Some(t) => Some(
            state
                .store
                .attempt_mfa_ticket(&refresh_token_hash(t.trim()), now.secs())
                .await?
                .filter(|t| !t.amr.starts_with("enrol:"))
                .ok_or_else(|| {
                    ApiError::unauthorized(
                        "invalid_ticket",
                        "the sign-in ticket is not valid; sign in again",
                    )
                })?,
        ),
        None => None,
    };
    let (user, word, cred_id) = verify_assertion(
        state,
        client,
        ceremony_id,
        credential,
        ticket.as_ref().map(|t| t.user_id.as_str()),
        now,
    )
    .await?;
    let amr = match (&ticket, mfa_ticket) {
        (Some(t), Some(raw)) => {
            let spent = state
                .store
                .use_mfa_ticket(&refresh_token_hash(raw.trim()), now.secs())
                .await?;
            if !spent {
                return Err(ApiError::unauthorized(
                    "invalid_ticket",
                    "the ticket was used",
                ));
            }
            core::with_second_factor(&t.amr, word)
        }
        _ => format!("{word} mfa"),
    };
    state.store.clear_login_failures(&user.email).await?;
    grant::start_session_by_passkey(state, client, &user, &amr, &cred_id, now).await
}
