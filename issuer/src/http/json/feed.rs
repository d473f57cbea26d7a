//! The revocation feed followers (sidecars) consume:
//! - `GET /internal/revocations?after=N`: live records after N, as JSON;
//! - `GET /internal/revocations/stream?after=N`: server-sent events, a
//!   snapshot of live records after N, then each new record as it commits,
//!   and `keys_changed` when the signing keys change.

use std::convert::Infallible;
use std::time::Duration;

use auth_types::RevocationEvent;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::http::error::ApiError;
use crate::service::revocations;
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    #[serde(default)]
    after: i64,
}

pub(super) fn check_follower(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.settings.feed_token.as_deref() else {
        return Ok(());
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Comparing digests keeps the comparison's timing independent of the secret.
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let matches = presented.is_some_and(|p| digest(p).as_ref() == digest(expected).as_ref());
    if matches {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "invalid_token",
            "feed token required",
        ))
    }
}

/// The first page of live records after `after`; `complete: false` means
/// ask again from `last_seq`.
#[utoipa::path(
    get,
    path = "/internal/revocations",
    operation_id = "feed_list",
    tag = "internal",
    summary = "Revocations (sidecars)",
    params(FeedQuery),
    responses(
        (status = 200, description = "Revocations after a sequence number", body = crate::http::openapi::AnyObject),
    ),
    security(("feed_token" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Json<RevocationEvent>, ApiError> {
    check_follower(&state, &headers)?;
    let upto = revocations::last_seq(&state).await?;
    let event = revocations::page(&state, query.after, upto)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(event))
}

#[utoipa::path(
    get,
    path = "/internal/revocations/stream",
    operation_id = "feed_stream",
    tag = "internal",
    summary = "Revocation feed (sidecars)",
    params(FeedQuery),
    responses(
        (status = 200, description = "Server-sent events: a snapshot, then revocations, key and permission changes as they commit, and heartbeats", content_type = "text/event-stream", body = crate::http::openapi::FeedEvent),
    ),
    security(("feed_token" = [])),
)]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    check_follower(&state, &headers)?;
    let Some(permit) = state.feed.admit_follower() else {
        return Err(ApiError::new(
            crate::service::error::Kind::Unavailable,
            "too_many_followers",
            "this replica has as many feed followers as it allows; retry another",
        ));
    };
    // Subscribe before reading the snapshot's end, so nothing committed in
    // between is lost: records up to `upto` come from the database, later
    // ones from the live channel.
    let live = state.feed.subscribe();
    let upto = revocations::last_seq(&state).await?;
    let first = revocations::page(&state, query.after, upto)
        .await
        .map_err(ApiError::unavailable)?;
    let metrics = state.metrics.clone();
    let closed = state.feed.closed();

    // Later pages are read as the follower takes them. A database error
    // ends the stream (the follower resumes from its last sequence number)
    // rather than skipping ahead to live events over a gap.
    let pages = stream::unfold(Some(first), move |next| {
        let state = state.clone();
        async move {
            let event = next?;
            let following = match &event {
                RevocationEvent::Snapshot {
                    complete: false,
                    last_seq,
                    ..
                } => match revocations::page(&state, *last_seq, upto).await {
                    Ok(e) => Some(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "feed snapshot page failed; ending the stream");
                        Some(RevocationEvent::Heartbeat { last_seq: -1 })
                    }
                },
                _ => None,
            };
            Some((event, following))
        }
    });
    let pages = pages.take_while(|e| {
        std::future::ready(!matches!(e, RevocationEvent::Heartbeat { last_seq: -1 }))
    });
    let snapshot_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = snapshot_done.clone();
    let pages = pages.inspect(move |e| {
        if matches!(e, RevocationEvent::Snapshot { complete: true, .. }) {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });

    metrics.feed_subscribers.inc();
    let guard = SubscriberGuard(metrics, permit);
    let live = stream::unfold((live, guard), move |(mut rx, guard)| {
        let snapshot_done = snapshot_done.clone();
        async move {
            if !snapshot_done.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(RevocationEvent::Revoked { record }) if record.seq <= upto => continue,
                    Ok(event) => return Some((event, (rx, guard))),
                    // Too far behind: end the stream; the follower resumes from its last seq.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let events = pages.chain(live).take_until(closed).map(|event| {
        let name = match &event {
            RevocationEvent::Snapshot { .. } => "snapshot",
            RevocationEvent::Revoked { .. } => "revoked",
            RevocationEvent::KeysChanged { .. } => "keys_changed",
            RevocationEvent::PermissionsChanged { .. } => "permissions_changed",
            RevocationEvent::Heartbeat { .. } => "heartbeat",
        };
        Ok(Event::default()
            .event(name)
            .json_data(&event)
            .unwrap_or_else(|_| Event::default().comment("unencodable event")))
    });
    // Keep-alive comments hold the connection open; only events (including
    // heartbeats, sent while the database answers) prove freshness.
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(2))))
}

/// Counts the follower and holds its place under the follower limit.
struct SubscriberGuard(
    std::sync::Arc<crate::service::metrics::Metrics>,
    #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit,
);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.feed_subscribers.dec();
    }
}
