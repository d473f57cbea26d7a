//! The client registry (admin API, pages, CLI): registering, changing,
//! rotating and deleting clients.

mod metadata;
mod view;

use serde::Serialize;

pub use metadata::{check, check_update, client_changed, NewClient, DEFAULT_GRANT_TYPES};
pub use view::{ClientView, DayUses, Registered};

use super::assertion;
use crate::domain::tokens::{random_b64, refresh_token_hash};
use crate::service::admin::Admin;
use crate::service::context::Client;
use crate::service::error::{Error, Kind, Result};
use crate::store::{AuditEvent, OAuthClient, Rotated};
use crate::AppState;

/// How long a rotated-out secret keeps working.
pub const SECRET_OVERLAP_SECS: i64 = 24 * 3600;

/// Registers a client; the secret of a confidential one is answered once.
pub async fn register(
    state: &AppState,
    admin: &Admin,
    client: &Client,
    new: &NewClient,
) -> Result<Registered> {
    let auth = admin.recent(state).await?;
    let now = state.now();
    // The issuer's own sign-in carries this id: a client holding it could
    // introspect users' own tokens and pass for them in token exchange.
    if new.client_id == state.settings.client_id {
        return Err(Error::new(
            Kind::Unprocessable,
            "invalid_client_metadata",
            "client_id: the issuer's own (--client-id); choose another",
        ));
    }

    let (record, secret) = check(new, now.secs())?;
    crate::service::keys::id_token_key(state).await?;
    if !state.store.create_client(&record, &auth.user.id).await? {
        return Err(Error::new(
            Kind::Conflict,
            "client_exists",
            "a client with this client_id exists",
        ));
    }
    state
        .audit(
            AuditEvent::new(now.ms, "oauth_client_created")
                .by(auth)
                .client(client)
                .meta(serde_json::json!({
                    "client_id": record.id,
                    "type": ClientView::from(&record).kind,
                    "redirect_uris": record.redirect_uris,
                    "scopes": record.scopes,
                    "first_party": record.first_party,
                    "grant_types": record.grant_types,
                    "access_token_ttl": record.access_token_ttl,
                    "refresh_token_ttl": record.refresh_token_ttl,
                })),
        )
        .await;
    Ok(Registered {
        client: ClientView::from(&record),
        client_secret: secret,
    })
}

pub async fn list(state: &AppState, _admin: &Admin) -> Result<Vec<ClientView>> {
    Ok(state
        .store
        .clients()
        .await?
        .iter()
        .map(ClientView::from)
        .collect())
}

/// One client, with its uses per day (as last written).
pub async fn get(state: &AppState, _admin: &Admin, client_id: &str) -> Result<ClientView> {
    let found = state
        .store
        .client(client_id)
        .await?
        .ok_or_else(|| Error::not_found("no such client"))?;
    let uses = state.store.client_usage(client_id, 30).await?;
    Ok(ClientView {
        uses_by_day: Some(
            uses.into_iter()
                .map(|(day, uses)| DayUses { day, uses })
                .collect(),
        ),
        ..ClientView::from(&found)
    })
}

/// A new secret, answered once; the old one works for
/// [`SECRET_OVERLAP_SECS`] more, so deployments can roll over, or stops at
/// once when `immediate` (a leaked secret).
pub async fn rotate_secret(
    state: &AppState,
    admin: &Admin,
    client: &Client,
    client_id: &str,
    immediate: bool,
) -> Result<String> {
    let auth = admin.recent(state).await?;
    let now = state.now();
    let secret = format!("cs_{}", random_b64(32)?);
    let rotated = state
        .store
        .rotate_client_secret(
            client_id,
            &refresh_token_hash(&secret),
            if immediate {
                now.secs()
            } else {
                now.secs() + SECRET_OVERLAP_SECS
            },
            now.secs(),
        )
        .await?;
    match rotated {
        Rotated::Done => {}
        Rotated::NoSuchClient => return Err(Error::not_found("no such confidential client")),
        Rotated::InOverlap(until) => return Err(in_overlap(until)),
    }
    let event = AuditEvent::new(now.ms, "oauth_client_secret_rotated")
        .by(auth)
        .client(client)
        .meta(serde_json::json!({"client_id": client_id, "immediate": immediate}));
    if immediate {
        // A leaked secret: what it obtained as the client itself ends too.
        let record = state
            .store
            .revoke_own_tokens(client_id, now.ms, state.revocation_expiry(now))
            .await?;
        state.sessions_ended(vec![record], event).await;
    } else {
        state.audit(event).await;
    }
    Ok(secret)
}

/// A client as changed, and how many of its sessions ended with the change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Updated {
    #[serde(flatten)]
    pub client: ClientView,
    /// Sessions that held a scope or resource the client may no longer ask
    /// for: ended, at the edge too.
    pub sessions_ended: usize,
}

/// Whether a session's grant exceeds what its client may now ask for: a
/// grant never outlives a permission its client lost.
pub fn exceeds(client: &OAuthClient, scope: Option<&str>, resource: Option<&str>) -> bool {
    scope
        .unwrap_or_default()
        .split_whitespace()
        .any(|s| !client.scopes.iter().any(|k| k == s))
        || resource.is_some_and(|r| !client.audiences.iter().any(|a| a == r))
}

/// Changes a client's description; its sessions that hold a scope or a
/// resource it may no longer ask for end, at the edge too.
pub async fn update(
    state: &AppState,
    admin: &Admin,
    client: &Client,
    client_id: &str,
    new: &NewClient,
) -> Result<Updated> {
    let auth = admin.recent(state).await?;
    let found = state
        .store
        .client(client_id)
        .await?
        .ok_or_else(|| Error::not_found("no such client"))?;
    let changed = check_update(&found, new)?;
    let now = state.now();
    let records = state
        .store
        .update_client(&changed, exceeds, now.ms, state.revocation_expiry(now))
        .await?
        .ok_or_else(client_changed)?;
    let changed = OAuthClient {
        version: changed.version + 1,
        ..changed
    };
    let ended = records.len();
    let event = AuditEvent::new(now.ms, "oauth_client_updated")
        .by(auth)
        .client(client)
        .meta(serde_json::json!({
            "client_id": changed.id,
            "redirect_uris": changed.redirect_uris,
            "scopes": changed.scopes,
            "audiences": changed.audiences,
            "first_party": changed.first_party,
            "grant_types": changed.grant_types,
            "access_token_ttl": changed.access_token_ttl,
            "refresh_token_ttl": changed.refresh_token_ttl,
            "sessions_ended": ended,
        }));
    state.sessions_ended(records, event).await;
    Ok(Updated {
        client: ClientView::from(&changed),
        sessions_ended: ended,
    })
}

/// A second rotation with an overlap while the first one's runs would stop
/// the secret deployments may still use: refused (409), naming the way out.
pub fn in_overlap(until: Option<i64>) -> Error {
    Error::new(
        Kind::Conflict,
        "rotation_in_progress",
        format!(
            "the secret before the last rotation works until {} (Unix time); rotate with \
             immediate to stop it now, or wait",
            until.unwrap_or_default()
        ),
    )
}

/// Replaces a `private_key_jwt` client's public keys.
pub async fn set_keys(
    state: &AppState,
    admin: &Admin,
    client: &Client,
    client_id: &str,
    jwks: &serde_json::Value,
) -> Result<ClientView> {
    let auth = admin.recent(state).await?;
    let stored = assertion::check_jwks(jwks)?;
    if !state.store.set_client_jwks(client_id, &stored).await? {
        return Err(Error::not_found("no such private_key_jwt client"));
    }
    let kids: Vec<String> = serde_json::from_str::<auth_types::JwkSet>(&stored)
        .map(|s| s.keys.into_iter().map(|k| k.kid).collect())
        .unwrap_or_default();
    state
        .audit(
            AuditEvent::new(state.now().ms, "oauth_client_keys_replaced")
                .by(auth)
                .client(client)
                .meta(serde_json::json!({"client_id": client_id, "kids": kids})),
        )
        .await;
    let found = state
        .store
        .client(client_id)
        .await?
        .ok_or_else(|| Error::not_found("no such client"))?;
    Ok(ClientView::from(&found))
}

/// Deletes a client; every session opened for it ends, at the edge too.
pub async fn delete(
    state: &AppState,
    admin: &Admin,
    client: &Client,
    client_id: &str,
) -> Result<usize> {
    let auth = admin.recent(state).await?;
    let now = state.now();
    let records = state
        .store
        .delete_client(client_id, now.ms, state.revocation_expiry(now))
        .await?
        .ok_or_else(|| Error::not_found("no such client"))?;
    let ended = records.len();
    let event = AuditEvent::new(now.ms, "oauth_client_deleted")
        .by(auth)
        .client(client)
        .meta(serde_json::json!({"client_id": client_id, "sessions_ended": ended}));
    state.sessions_ended(records, event).await;
    Ok(ended)
}
