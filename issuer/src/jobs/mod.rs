//! Background work, each loop in its own file, all stopped by one signal:
//! [`Jobs::stop`] tells every loop, which returns at its next wait (a loop
//! mid-step finishes the step), and waits for them. No `abort()`.

mod backchannel;
mod keys;
mod outbox;
mod prune;
mod refusals;
mod usage;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::service::feed;
use crate::AppState;

pub use keys::key_tick;
pub use refusals::audit_refusals;

/// How long stopping waits for the loops before giving up on them.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The shutdown signal, as each loop holds it.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once stopping has begun.
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }

    /// Waits `every`; false when stopping began first.
    pub async fn sleep(&mut self, every: Duration) -> bool {
        tokio::select! {
            _ = self.stopped() => false,
            _ = tokio::time::sleep(every) => true,
        }
    }
}

/// The running loops.
pub struct Jobs {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Jobs {
    /// Starts every loop the settings call for.
    pub fn start(state: &AppState) -> Jobs {
        let (stop, rx) = watch::channel(false);
        let stop_of = || Stop(rx.clone());
        let mut tasks = JoinSet::new();
        let settings = state.settings.clone();
        let keys_changed = Arc::new(Notify::new());
        // The feed hub's loops wait on the database and Redis: they end
        // where they wait when the signal comes.
        tasks.spawn(until_stopped(
            stop_of(),
            feed::run_hub(
                state.feed.clone(),
                state.store.clone(),
                state.clock.clone(),
                Duration::from_millis(settings.feed_poll_ms),
                Duration::from_millis(settings.feed_heartbeat_ms),
                state.keys.clone(),
                keys_changed.clone(),
            ),
        ));
        tasks.spawn(until_stopped(
            stop_of(),
            feed::run_redis_listener(state.feed.clone(), keys_changed.clone()),
        ));
        tasks.spawn(keys::reload_keys(
            state.clone(),
            keys_changed,
            Duration::from_secs(settings.key_reload_secs),
            stop_of(),
        ));
        tasks.spawn(keys::key_lifecycle(state.clone(), stop_of()));
        tasks.spawn(prune::prune(state.clone(), stop_of()));
        tasks.spawn(backchannel::run(state.clone(), stop_of()));
        if let Some(mailer) = state.mailer.clone() {
            tasks.spawn(outbox::run_outbox(state.clone(), mailer, stop_of()));
        }
        tasks.spawn(refusals::audit_refusals_every(
            state.clone(),
            Duration::from_millis(settings.audit_refusals_ms),
            stop_of(),
        ));
        tasks.spawn(usage::flush_every(
            state.clone(),
            Duration::from_secs(settings.usage_flush_secs),
            stop_of(),
        ));
        Jobs { stop, tasks }
    }

    /// Signals every loop and waits for them to return.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_TIMEOUT, all).await.is_err() {
            tracing::warn!("background jobs did not stop in time");
        }
    }
}

/// `work` until the signal: for a loop whose every wait is on something
/// else (a database poll, a Redis subscription).
async fn until_stopped(mut stop: Stop, work: impl Future<Output = ()>) {
    tokio::select! {
        _ = stop.stopped() => {}
        _ = work => {}
    }
}
