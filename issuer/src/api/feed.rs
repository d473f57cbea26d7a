//! The revocation feed followers (sidecars) consume:
//! - `GET /internal/revocations?after=N`: live records after N, as JSON;
//! - `GET /internal/revocations/stream?after=N`: server-sent events, a
//!   snapshot of live records after N, then each new record as it commits,
//!   and `keys_changed` when the signing keys change.

use std::convert::Infallible;
use std::time::Duration;

use auth_types::{RevocationEvent, RevocationRecord};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::AppState;

/// Snapshot records per event, so a large snapshot is not one huge line.
const SNAPSHOT_CHUNK: usize = 5_000;
const MAX_SNAPSHOT: i64 = 2_000_000;

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    #[serde(default)]
    after: i64,
}

fn check_follower(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
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

async fn snapshot(state: &AppState, after: i64) -> Result<(Vec<RevocationRecord>, i64), ApiError> {
    let last = state
        .store
        .last_revocation_seq()
        .await
        .map_err(ApiError::unavailable)?;
    let records = state
        .store
        .revocations_after(after, state.now().secs(), MAX_SNAPSHOT)
        .await
        .map_err(ApiError::unavailable)?;
    let last_seq = records.last().map_or(last, |r| r.seq.max(last)).max(after);
    Ok((records, last_seq))
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Json<RevocationEvent>, ApiError> {
    check_follower(&state, &headers)?;
    let (records, last_seq) = snapshot(&state, query.after).await?;
    Ok(Json(RevocationEvent::Snapshot { records, last_seq }))
}

pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    check_follower(&state, &headers)?;
    // Subscribe before reading the snapshot, so nothing committed in between is lost.
    let live = state.feed.subscribe();
    let (records, snapshot_last) = snapshot(&state, query.after).await?;

    let mut chunks: Vec<RevocationEvent> = records
        .chunks(SNAPSHOT_CHUNK)
        .map(|chunk| RevocationEvent::Snapshot {
            last_seq: chunk.last().map_or(snapshot_last, |r| r.seq),
            records: chunk.to_vec(),
        })
        .collect();
    // The last snapshot event always carries the snapshot's position.
    chunks.push(RevocationEvent::Snapshot {
        records: Vec::new(),
        last_seq: snapshot_last,
    });
    let metrics = state.metrics.clone();
    metrics.feed_subscribers.inc();
    let guard = SubscriberGuard(metrics);

    let live = stream::unfold((live, guard), move |(mut rx, guard)| async move {
        loop {
            match rx.recv().await {
                Ok(RevocationEvent::Revoked { record }) if record.seq <= snapshot_last => continue,
                Ok(event) => return Some((event, (rx, guard))),
                // Too far behind: end the stream; the follower resumes from its last seq.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
            }
        }
    });
    let events = stream::iter(chunks)
        .chain(live)
        .take_until(state.feed.closed())
        .map(|event| {
            let name = match &event {
                RevocationEvent::Snapshot { .. } => "snapshot",
                RevocationEvent::Revoked { .. } => "revoked",
                RevocationEvent::KeysChanged => "keys_changed",
            };
            Ok(Event::default()
                .event(name)
                .json_data(&event)
                .unwrap_or_else(|_| Event::default().comment("unencodable event")))
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(2))))
}

struct SubscriberGuard(std::sync::Arc<crate::metrics::Metrics>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.feed_subscribers.dec();
    }
}
