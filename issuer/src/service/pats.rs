//! Personal access tokens: created (shown once), listed and revoked by
//! their owner. Each is a session of its own, so its end reaches the edge
//! as any session's does; scripts exchange it at the token endpoint for a
//! short access token (`oauth::token::personal`), and the edge only ever
//! sees that.

use serde::Serialize;

use crate::domain::oauth::{valid_scope_name, PERSONAL_SCOPES};
use crate::domain::pat::{self, CLIENT_ID, MAX_LIVE};
use crate::domain::tokens::{new_id, refresh_token_hash};
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error, Kind, Result};
use crate::store::{AuditEvent, NewSession, OAuthBinding, PersonalToken};
use crate::AppState;

const MAX_NAME: usize = 64;
const MAX_SCOPES: usize = 16;
const DEFAULT_DAYS: i64 = 30;

/// What a user asks for.
#[derive(Debug, Clone, Default)]
pub struct NewPersonalToken {
    pub name: String,
    /// Space-separated.
    pub scope: String,
    pub expires_in_days: Option<i64>,
}

/// A token as its owner sees it in lists.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PersonalTokenView {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
}

impl From<PersonalToken> for PersonalTokenView {
    fn from(t: PersonalToken) -> Self {
        PersonalTokenView {
            id: t.id,
            name: t.name,
            scope: t.scope,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// A new token: the secret (shown this once, stored only hashed) and its view.
pub async fn create(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    asked: NewPersonalToken,
) -> Result<(String, PersonalTokenView)> {
    let invalid = |m: String| Error::bad_request("invalid_request", m);
    let name = asked.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(invalid(format!("name: 1 to {MAX_NAME} characters")));
    }
    let scope = scope(&asked.scope, &state.settings.pat_scopes).map_err(invalid)?;
    let max_days = state.settings.pat_max_lifetime_days;
    let days = asked.expires_in_days.unwrap_or(DEFAULT_DAYS.min(max_days));
    if !(1..=max_days).contains(&days) {
        return Err(invalid(format!(
            "expires_in_days: 1 to {max_days} (the operator's maximum)"
        )));
    }
    let now = state.now();
    // A stolen access token must not become a credential that lives for
    // months: the rule for changing factors (recent, with the second
    // factor if the user has one).
    crate::service::factors::require_recent_for(
        state,
        auth,
        now,
        "creating a personal access token",
    )
    .await?;
    let token = pat::new_token().map_err(Error::internal)?;
    let id = new_id();
    let expires_at = now.secs() + days * 86_400;
    let session = NewSession {
        id: &id,
        user_id: &auth.user.id,
        now: now.secs(),
        idle_expires_at: expires_at,
        absolute_expires_at: expires_at,
        ip: client.ip.as_deref(),
        user_agent: client.user_agent.as_deref(),
        // The gate ("this role needs a second factor") reads the factors
        // of the sign-in that created it.
        amr: &auth.session.amr,
        refresh_hash: "",
        opened_by: None,
        oauth: Some(OAuthBinding {
            client_id: CLIENT_ID,
            scope: &scope,
            auth_time: auth.session.auth_time,
            resource: None,
            access_ttl: None,
            dpop_jkt: None,
        }),
    };
    // The passkey that opened the creating session, if one did, opens this
    // one too: removing that passkey ends the token with the session.
    let created = state
        .store
        .create_personal_token(
            &session,
            &auth.session.id,
            name,
            &refresh_token_hash(&token),
            MAX_LIVE,
        )
        .await?;
    if !created {
        return Err(Error::new(
            Kind::Conflict,
            "too_many_tokens",
            format!("at most {MAX_LIVE} live personal access tokens: revoke one first"),
        ));
    }
    state
        .audit(
            AuditEvent::new(now.ms, "personal_token_created")
                .by(auth)
                .client(client)
                .meta(serde_json::json!({
                    "token_id": id, "name": name, "scope": scope, "expires_at": expires_at,
                })),
        )
        .await;
    // Told by mail: a token made by someone who got into the account (an
    // XSS, a stolen sign-in) is found out by its owner.
    let mail =
        crate::service::mail::templates::personal_token_created(&auth.user.email, name, &scope);
    if let Err(e) = crate::service::mail::send(state, mail).await {
        tracing::error!(error = %e, "personal access token notice not queued");
    }
    let view = PersonalTokenView {
        id,
        name: name.to_string(),
        scope,
        created_at: now.secs(),
        expires_at,
        last_used_at: None,
    };
    Ok((token, view))
}

/// The caller's live tokens, newest first.
pub async fn list(state: &AppState, auth: &Authenticated) -> Result<Vec<PersonalTokenView>> {
    let tokens = state
        .store
        .personal_tokens(&auth.user.id, state.now().secs())
        .await?;
    Ok(tokens.into_iter().map(PersonalTokenView::from).collect())
}

/// Revokes one of the caller's tokens (someone else's is "not found"):
/// its session ends, and with it, at the edge, every access token
/// exchanged for it.
pub async fn revoke(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    id: &str,
) -> Result<()> {
    let now = state.now();
    let session = state
        .store
        .session(id)
        .await?
        .filter(|s| {
            s.user_id == auth.user.id
                && s.client_id.as_deref() == Some(CLIENT_ID)
                && s.is_live(now.secs())
        })
        .ok_or_else(|| Error::not_found("no such personal access token"))?;
    let record = state
        .store
        .revoke_session(
            &session.id,
            "personal_token_revoked",
            now.ms,
            state.revocation_expiry(now),
        )
        .await?;
    let event = AuditEvent::new(now.ms, "personal_token_revoked")
        .by(auth)
        .client(client)
        .meta(serde_json::json!({"token_id": session.id}));
    state
        .sessions_ended(record.into_iter().collect(), event)
        .await;
    Ok(())
}

/// The scope asked for: scopes the operator offers (`--pat-scopes`) only,
/// none of the sign-in scopes, repeats dropped, at least one. (Users would
/// otherwise name scopes no admin ever gave anyone, which a service that
/// reads scopes itself might honour.)
fn scope(asked: &str, offered: &[String]) -> std::result::Result<String, String> {
    let mut scopes: Vec<&str> = Vec::new();
    for s in asked.split_whitespace() {
        if PERSONAL_SCOPES.contains(&s) || !valid_scope_name(s) || !offered.iter().any(|o| o == s) {
            return Err(format!(
                "scope: {s:?} is not offered for personal access tokens (offered: {})",
                offered.join(" ")
            ));
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    if scopes.is_empty() {
        return Err("scope: at least one (a token for everything is not offered)".into());
    }
    if scopes.len() > MAX_SCOPES {
        return Err(format!("scope: at most {MAX_SCOPES}"));
    }
    Ok(scopes.join(" "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn scopes_are_offered_and_bounded() {
        let offered: Vec<String> = ["notes:read", "memory:read", "openid"]
            .map(String::from)
            .to_vec();
        let scope = |s| super::scope(s, &offered);
        assert_eq!(
            scope("notes:read  notes:read memory:read").unwrap(),
            "notes:read memory:read"
        );
        assert!(scope("").is_err());
        assert!(scope("openid").is_err());
        assert!(scope("email notes:read").is_err());
        assert!(scope("Notes").is_err());
        assert!(scope("billing:refund").is_err());
    }
}
