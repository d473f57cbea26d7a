//! The signing keys: picking up changes other replicas or the CLI made, and
//! applying due transitions (scheduled rotation, activation, removal).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::Stop;
use crate::domain::rotation;
use crate::AppState;

/// Picks up key changes made by other replicas or the CLI.
pub(super) async fn reload_keys(
    state: AppState,
    pushed: Arc<Notify>,
    every: Duration,
    mut stop: Stop,
) {
    loop {
        tokio::select! {
            _ = pushed.notified() => {}
            _ = tokio::time::sleep(every) => {}
            _ = stop.stopped() => return,
        }
        match state.keys.reload(&state.store).await {
            Ok(true) => state.feed.keys_changed(state.keys.version(), false).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "signing key reload failed"),
        }
    }
}

/// Applies due key transitions (scheduled rotation, activation, removal).
/// Replicas all tick; the key lock makes each transition happen once.
pub(super) async fn key_lifecycle(state: AppState, mut stop: Stop) {
    let every = Duration::from_secs(state.settings.key_tick_secs);
    loop {
        if let Err(e) = key_tick(&state).await {
            tracing::warn!(error = %e, "key lifecycle step failed");
        }
        if !stop.sleep(every).await {
            return;
        }
    }
}

pub async fn key_tick(state: &AppState) -> anyhow::Result<()> {
    let now = state.now().secs();
    let life = state.settings.keys.lifecycle();
    // Clients registered from the shell get their ID-token key here.
    let wanted = state.store.has_clients().await?;
    let changes = state
        .store
        .change_keys(|keys| {
            let mut make = |u, alg, st: &str, at| state.keys.make_key(u, alg, st, now, at);
            Ok(rotation::plan_tick_all(
                keys, now, &life, wanted, &mut make,
            )?)
        })
        .await?;
    if !changes.is_empty() {
        tracing::info!(?changes, "signing keys changed");
        state.keys_changed().await?;
    }
    state.update_key_metrics().await?;
    Ok(())
}
