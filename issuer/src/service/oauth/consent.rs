//! The applications a user let in: listed on the account page, and
//! disconnected there (the consent goes, and the application's sessions
//! end at the edge through the revocation feed).

use serde::Serialize;

use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error, Result};
use crate::store::AuditEvent;
use crate::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Connected {
    pub client_id: String,
    pub name: String,
    /// What the user allowed (none for first-party applications, which do
    /// not ask).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub first_party: bool,
}

pub async fn connected(state: &AppState, auth: &Authenticated) -> Result<Vec<Connected>> {
    let now = state.now();
    Ok(state
        .store
        .connected_clients(&auth.user.id, now.secs())
        .await?
        .into_iter()
        .map(|(c, scope)| Connected {
            client_id: c.id,
            name: c.name,
            scope,
            first_party: c.first_party,
        })
        .collect())
}

/// Disconnects an application: its consent is withdrawn and every session
/// it holds for the user ends. Answers how many sessions ended.
pub async fn disconnect(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    client_id: &str,
) -> Result<usize> {
    let now = state.now();
    let records = state
        .store
        .revoke_consent(
            &auth.user.id,
            client_id,
            now.ms,
            state.revocation_expiry(now),
        )
        .await?
        .ok_or_else(|| Error::not_found("this application is not connected"))?;
    let ended = records.len();
    let event = AuditEvent::new(now.ms, "oauth_consent_revoked")
        .by(auth)
        .client(client)
        .meta(serde_json::json!({"client_id": client_id, "sessions_ended": ended}));
    state.sessions_ended(records, event).await;
    Ok(ended)
}

/// Adds `scope` to what the user allowed `client_id` (what was allowed
/// before stays allowed); the whole allowed scope.
pub async fn remember<'a>(
    state: &AppState,
    user_id: &str,
    client_id: &str,
    scope: impl IntoIterator<Item = &'a str>,
    now_secs: i64,
) -> Result<String> {
    let before = state
        .store
        .consent(user_id, client_id)
        .await?
        .unwrap_or_default();
    let mut all: Vec<&str> = before.split(' ').filter(|s| !s.is_empty()).collect();
    for s in scope {
        if !all.contains(&s) {
            all.push(s);
        }
    }
    let scope = all.join(" ");
    state
        .store
        .grant_consent(user_id, client_id, &scope, now_secs)
        .await?;
    Ok(scope)
}
