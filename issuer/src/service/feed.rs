//! The revocation feed's hub: reads new revocation records from the database
//! (the source of truth) in sequence order and broadcasts them to every
//! follower connected to this replica.
//!
//! The hub wakes when this replica commits a revocation, when Redis says
//! another replica did (if `--redis-url` is set), and on a poll interval
//! (which alone suffices without Redis, at the cost of lag).

use std::sync::Arc;
use std::time::Duration;

use auth_types::RevocationEvent;
use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::{broadcast, watch, Mutex, Notify, OwnedSemaphorePermit, Semaphore};

use crate::domain::clock::Clock;
use crate::service::keyring::Keyring;
use crate::store::Store;

pub const REDIS_CHANNEL: &str = "devmentor-auth:events";
const MSG_REVOKED: &str = "revoked";
const MSG_KEYS: &str = "keys";
const MSG_PERMISSIONS: &str = "permissions";
/// Followers further behind than this many events are dropped and must
/// reconnect (resuming from their last sequence number).
const BROADCAST_CAPACITY: usize = 16_384;

pub struct FeedHub {
    events: broadcast::Sender<RevocationEvent>,
    /// One permit per connected follower: bounds connections and their buffers.
    followers: Arc<Semaphore>,
    wake: Notify,
    redis: Option<redis::Client>,
    publisher: Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// The role → permission map may have changed (here or, by Redis, on
    /// another replica): the hub reads its version at the next wake rather
    /// than at every wake.
    permissions_dirty: std::sync::atomic::AtomicBool,
    /// Set at shutdown so open feed streams end and the server can drain.
    closing: watch::Sender<bool>,
}

impl FeedHub {
    pub fn new(redis_url: Option<&str>, max_followers: usize) -> anyhow::Result<Self> {
        let redis = redis_url.map(redis::Client::open).transpose()?;
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        Ok(FeedHub {
            events,
            followers: Arc::new(Semaphore::new(max_followers)),
            wake: Notify::new(),
            redis,
            publisher: Mutex::new(None),
            permissions_dirty: std::sync::atomic::AtomicBool::new(false),
            closing: watch::channel(false).0,
        })
    }

    /// A place for one more follower, if there is room.
    pub fn admit_follower(&self) -> Option<OwnedSemaphorePermit> {
        self.followers.clone().try_acquire_owned().ok()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
        self.events.subscribe()
    }

    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once the service is shutting down.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    pub fn follower_count(&self) -> usize {
        self.events.receiver_count()
    }

    /// This replica committed revocations: push them to local followers now
    /// and tell the other replicas.
    pub async fn revocations_committed(&self) {
        self.wake.notify_one();
        self.tell_replicas(MSG_REVOKED).await;
    }

    /// The signing key set changed (now at `version`).
    pub async fn keys_changed(&self, version: i64, tell_replicas: bool) {
        let _ = self.events.send(RevocationEvent::KeysChanged { version });
        if tell_replicas {
            self.tell_replicas(MSG_KEYS).await;
        }
    }

    /// The role → permission map changed on this replica: announce it to
    /// local followers now (the hub reads the new version) and tell the
    /// other replicas.
    pub async fn permissions_changed(&self) {
        self.permissions_dirty
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
        self.tell_replicas(MSG_PERMISSIONS).await;
    }

    async fn tell_replicas(&self, message: &str) {
        let Some(client) = &self.redis else { return };
        let mut guard = self.publisher.lock().await;
        if guard.is_none() {
            match client.get_multiplexed_async_connection().await {
                Ok(conn) => *guard = Some(conn),
                Err(e) => {
                    tracing::warn!(error = %e, "redis unavailable; replicas will catch up by polling");
                    return;
                }
            }
        }
        if let Some(conn) = guard.as_mut() {
            if let Err(e) = conn.publish::<_, _, i64>(REDIS_CHANNEL, message).await {
                tracing::warn!(error = %e, "redis publish failed; replicas will catch up by polling");
                *guard = None;
            }
        }
    }
}

/// Broadcasts every record committed after start-up, in order, forever.
///
/// A heartbeat is sent only after a successful catch-up read of the
/// revocations table, carrying the sequence number broadcast so far: it
/// proves this replica reads revocations (followers count only events, never
/// keep-alives, as fresh), and a follower that holds less knows it missed
/// something. The same tick notices key-set changes made by other replicas
/// or the CLI, so they spread without Redis too.
pub async fn run_hub(
    hub: Arc<FeedHub>,
    store: Store,
    clock: Arc<dyn Clock>,
    poll_every: Duration,
    heartbeat_every: Duration,
    keys: Arc<Keyring>,
    keys_stale: Arc<Notify>,
) {
    let mut last_seq = loop {
        match store.last_revocation_seq().await {
            Ok(seq) => break seq,
            Err(e) => {
                tracing::warn!(error = %e, "revocation hub cannot read the database; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // Announced when it grows; followers fetch the map themselves.
    let mut permissions_version = store.permissions_version().await.unwrap_or(0);
    let mut poll = tokio::time::interval(poll_every);
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    for timer in [&mut poll, &mut heartbeat] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        let beat = tokio::select! {
            _ = hub.wake.notified() => false,
            _ = poll.tick() => false,
            _ = heartbeat.tick() => true,
        };
        let now = clock.now_ms().div_euclid(1000);
        let caught_up = match store.revocations_after(last_seq, now, 10_000).await {
            Ok(records) => {
                let full = records.len() == 10_000;
                for record in records {
                    last_seq = record.seq;
                    let _ = hub.events.send(RevocationEvent::Revoked { record });
                }
                !full
            }
            Err(e) => {
                tracing::warn!(error = %e, "revocation hub query failed; feed heartbeats paused");
                false
            }
        };
        // Read when announced, and at every heartbeat (which also catches
        // changes made straight in the database, by the CLI).
        let announced = hub
            .permissions_dirty
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        let version = if beat || announced {
            store.permissions_version().await
        } else {
            Ok(permissions_version)
        };
        match version {
            Ok(version) if version > permissions_version => {
                permissions_version = version;
                let _ = hub
                    .events
                    .send(RevocationEvent::PermissionsChanged { version });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "permissions version read failed"),
        }
        if !beat {
            continue;
        }
        match store.key_set_version().await {
            Ok(version) if caught_up => {
                if version > keys.version() {
                    keys_stale.notify_one();
                }
                let _ = hub.events.send(RevocationEvent::Heartbeat { last_seq });
                // Repeated every beat, so a follower whose fetch failed (or
                // who restarted from an old saved map) catches up.
                let _ = hub.events.send(RevocationEvent::PermissionsChanged {
                    version: permissions_version,
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "database unreachable; feed heartbeats paused"),
        }
    }
}

/// Listens for other replicas' news on Redis, reconnecting with backoff.
pub async fn run_redis_listener(hub: Arc<FeedHub>, on_keys_changed: Arc<Notify>) {
    let Some(client) = hub.redis.clone() else {
        return;
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(REDIS_CHANNEL).await {
                Ok(()) => {
                    backoff = Duration::from_millis(200);
                    // Anything missed while disconnected is in the database.
                    hub.wake.notify_one();
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        match msg.get_payload::<String>().as_deref() {
                            Ok(MSG_REVOKED) => hub.wake.notify_one(),
                            Ok(MSG_KEYS) => on_keys_changed.notify_one(),
                            Ok(MSG_PERMISSIONS) => {
                                hub.permissions_dirty
                                    .store(true, std::sync::atomic::Ordering::Release);
                                hub.wake.notify_one();
                            }
                            _ => {}
                        }
                    }
                    tracing::warn!("redis subscription ended; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "redis subscribe failed"),
            },
            Err(e) => tracing::warn!(error = %e, "redis connect failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
