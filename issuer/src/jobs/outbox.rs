//! The mail outbox: sends what is due, on every replica (leases keep them
//! apart), woken by a new mail or the poll interval.

use std::sync::Arc;
use std::time::Duration;

use super::Stop;
use crate::service::mail::{self, Mailer};
use crate::AppState;

/// The outbox worker: runs on every replica; leases keep them apart.
pub(super) async fn run_outbox(state: AppState, mailer: Arc<Mailer>, mut stop: Stop) {
    let every = Duration::from_millis(mailer.settings.mail_poll_ms);
    loop {
        match mail::deliver_due(&state, &mailer).await {
            // A full batch: there may be more due at once.
            Ok(n) if n as i64 == mail::BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox check failed"),
        }
        tokio::select! {
            _ = mailer.wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
            _ = stop.stopped() => return,
        }
    }
}
