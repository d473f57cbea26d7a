//! Back-channel logout deliveries: on every replica (claims keep them
//! apart), woken when sessions end here, else on the poll interval.

use std::time::Duration;

use super::Stop;
use crate::service::oauth::backchannel;
use crate::AppState;

pub(super) async fn run(state: AppState, mut stop: Stop) {
    let settings = state.settings.backchannel.clone();
    let http = match backchannel::http_client(settings.backchannel_timeout_ms) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout client could not be built");
            return;
        }
    };
    let every = Duration::from_millis(settings.backchannel_poll_ms);
    loop {
        match backchannel::deliver_due(&state, &http).await {
            // A full batch: there may be more due at once.
            Ok(n) if n as i64 == backchannel::BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "back-channel logout pass failed"),
        }
        tokio::select! {
            _ = state.backchannel_wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
            _ = stop.stopped() => return,
        }
    }
}
