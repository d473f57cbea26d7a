//! What the revocation feed serves its followers (sidecars): pages of the
//! live records after a sequence number, read from the database page by
//! page as the follower takes them.

use auth_types::RevocationEvent;

use crate::service::error::{Error, Result};
use crate::AppState;

/// Records per snapshot page: a snapshot is never held whole in memory.
pub const SNAPSHOT_PAGE: i64 = 5_000;

/// The last committed sequence number; a database failure is
/// "unavailable", for the follower to retry.
pub async fn last_seq(state: &AppState) -> Result<i64> {
    state
        .store
        .last_revocation_seq()
        .await
        .map_err(Error::unavailable)
}

/// One page of live records after `after`, up to `upto`.
pub async fn page(state: &AppState, after: i64, upto: i64) -> sqlx::Result<RevocationEvent> {
    let mut records = state
        .store
        .revocations_after(after, state.now().secs(), SNAPSHOT_PAGE)
        .await?;
    let full = records.len() as i64 == SNAPSHOT_PAGE;
    records.retain(|r| r.seq <= upto);
    let complete = !full || records.last().is_none_or(|r| r.seq >= upto);
    let last_seq = match records.last() {
        Some(r) if !complete => r.seq,
        _ => upto.max(after),
    };
    Ok(RevocationEvent::Snapshot {
        records,
        last_seq,
        complete,
    })
}
