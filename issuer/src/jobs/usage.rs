//! Services' counted uses, written in batches.

use std::time::Duration;

use super::Stop;
use crate::AppState;

/// Writes the counts every `every`, and once more when stopping: a
/// graceful shutdown loses none.
pub(super) async fn flush_every(state: AppState, every: Duration, mut stop: Stop) {
    loop {
        let go_on = stop.sleep(every).await;
        if let Err(e) = crate::service::usage::flush(&state).await {
            tracing::warn!(error = %e, "service usage not written; kept for the next try");
        }
        if !go_on {
            return;
        }
    }
}
