//! Signing keys for operators holding the `admin` role: list, rotate (a
//! new key, pending until it activates, unless `now`), revoke. Each change
//! reloads this replica's keyring and tells the other replicas.

use auth_types::SigningAlg;

use crate::domain::keys::SigningKey;
use crate::domain::rotation::{self, RotationError};
use crate::service::admin::Admin;
use crate::service::context::Client;
use crate::service::error::{Error, Kind, Result};
use crate::service::keyring::created_kid;
use crate::store::{AuditEvent, StoredKey};
use crate::AppState;

fn rotation_error(e: RotationError) -> Error {
    match e {
        RotationError::AlreadyPending { .. } => {
            Error::new(Kind::Conflict, "rotation_pending", e.to_string())
        }
        RotationError::UnknownKey(_) => Error::not_found(e.to_string()),
        RotationError::Other(e) => Error::internal(e),
    }
}

/// Every key the database holds (the private halves stay there).
pub async fn list(state: &AppState, _admin: &Admin) -> Result<Vec<StoredKey>> {
    Ok(state.store.keys().await?)
}

/// Rotates to a new key of `alg` (the configured one by default); `now`
/// makes it sign at once. The keys as they now are.
pub async fn rotate(
    state: &AppState,
    client: &Client,
    admin: &Admin,
    alg: Option<&str>,
    now_please: bool,
) -> Result<Vec<StoredKey>> {
    let auth = admin.recent(state).await?;
    let alg = match alg {
        None => state.settings.keys.signing_alg,
        Some(a) => SigningAlg::parse(a).ok_or_else(|| {
            Error::new(
                Kind::Unprocessable,
                "invalid_alg",
                "alg must be ES256, EdDSA or RS256",
            )
        })?,
    };
    let now = state.now().secs();
    let life = state.settings.keys.lifecycle();
    let changes = state
        .store
        .change_keys(|keys| {
            let mut make = |u, a, st: &str, at| state.keys.make_key(u, a, st, now, at);
            rotation::plan_rotate_access(keys, now, &life, now_please, alg, &mut make)
        })
        .await
        .map_err(rotation_error)?;
    state.keys_changed().await?;
    let new_kid = created_kid(&changes);
    state
        .audit(
            AuditEvent::new(now * 1000, "key_rotated")
                .by(auth)
                .target(new_kid.as_deref().unwrap_or_default())
                .client(client)
                .meta(serde_json::json!({"kid": new_kid})),
        )
        .await;
    Ok(state.store.keys().await?)
}

/// Revokes a key: tokens it signed are refused from now on.
pub async fn revoke(
    state: &AppState,
    client: &Client,
    admin: &Admin,
    kid: &str,
) -> Result<Vec<StoredKey>> {
    let auth = admin.recent(state).await?;
    let now = state.now().secs();
    let alg = state.settings.keys.signing_alg;
    state
        .store
        .change_keys(|keys| {
            let mut make = |u, a, st: &str, at| state.keys.make_key(u, a, st, now, at);
            rotation::plan_revoke_any(keys, kid, now, alg, &mut make)
        })
        .await
        .map_err(rotation_error)?;
    state.keys_changed().await?;
    tracing::warn!(kid, "signing key revoked");
    state
        .audit(
            AuditEvent::new(now * 1000, "key_revoked")
                .by(auth)
                .target(kid)
                .client(client),
        )
        .await;
    Ok(state.store.keys().await?)
}

/// The key that signs ID tokens (and logout tokens): RS256, as OpenID
/// Connect requires. When the access keys use another algorithm and the
/// ID-token lane has no key yet, it is made now, once across replicas
/// (the key lock), and announced like any key change. Registering a client
/// calls this, so the key is in the JWKS before a relying party reads it.
pub async fn id_token_key(state: &AppState) -> Result<std::sync::Arc<SigningKey>> {
    let key = state.keys.snapshot().id_signing.clone();
    if key.alg == SigningAlg::RS256 {
        return Ok(key);
    }
    let now = state.now().secs();
    let life = state.settings.keys.lifecycle();
    let changes = state
        .store
        .change_keys(|keys| {
            let mut make = |u, a, st: &str, at| state.keys.make_key(u, a, st, now, at);
            Ok(rotation::plan_id_token_lane(
                keys, now, &life, true, &mut make,
            )?)
        })
        .await
        .map_err(rotation_error)?;
    if let Some(kid) = created_kid(&changes) {
        tracing::info!(%kid, "created the first ID-token signing key (RS256)");
    }
    state.keys_changed().await?;
    let key = state.keys.snapshot().id_signing.clone();
    if key.alg != SigningAlg::RS256 {
        return Err(Error::internal(anyhow::anyhow!(
            "no RS256 key for ID tokens after making one"
        )));
    }
    Ok(key)
}
