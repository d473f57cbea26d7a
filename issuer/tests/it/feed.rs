//! The revocation feed as followers see it: paged snapshots, bounded
//! followers, heartbeats only while the database answers, versioned keys,
//! and records that outlive every token they cover.

use std::time::Duration;

use auth_types::{JwkSet, RevocationEvent, RevocationKind, MAX_LEEWAY_SECS};
use futures_util::StreamExt;
use issuer::store::NewRevocation;
use reqwest::StatusCode;
use serde_json::json;

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    snapshots_come_in_pages_and_end_complete,
    revocation_records_outlive_every_token_they_cover,
    followers_are_bounded,
    heartbeats_flow_only_while_the_database_answers,
    heartbeats_stop_when_only_revocations_cannot_be_read,
    the_jwks_version_grows_with_every_key_change,
);

/// Reads server-sent events until `stop` says so or `limit` passes.
async fn read_events(
    response: reqwest::Response,
    limit: Duration,
    mut stop: impl FnMut(&RevocationEvent) -> bool,
) -> Vec<RevocationEvent> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            let event: RevocationEvent = serde_json::from_str(&data).expect("event json");
            let done = stop(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }
    events
}

async fn snapshots_come_in_pages_and_end_complete(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    const N: usize = 12_345;
    let subjects: Vec<String> = (0..N).map(|i| format!("sid-{i}")).collect();
    let now_ms = issuer::domain::clock::Clock::now_ms(&issuer::domain::clock::SystemClock);
    let batch: Vec<NewRevocation<'_>> = subjects
        .iter()
        .map(|s| NewRevocation {
            kind: RevocationKind::Session,
            subject: s,
            issued_before: 0,
            created_at_ms: now_ms,
            expires_at: now_ms / 1000 + 3600,
        })
        .collect();
    t.server
        .state
        .store
        .record_revocations(&batch)
        .await
        .expect("bulk insert");

    // JSON pages: none larger than the page size, the last one complete.
    let (mut after, mut total, mut pages) = (0, 0, 0);
    loop {
        let event: RevocationEvent = t
            .http
            .get(t.url(&format!("/internal/revocations?after={after}")))
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("json");
        let RevocationEvent::Snapshot {
            records,
            last_seq,
            complete,
        } = event
        else {
            panic!("expected a snapshot page")
        };
        assert!(records.len() <= 5_000);
        assert!(records.iter().all(|r| r.seq > after && r.seq <= last_seq));
        total += records.len();
        pages += 1;
        after = last_seq;
        if complete {
            break;
        }
        assert!(pages < 10, "paging must end");
    }
    assert_eq!(total, N);
    assert_eq!(pages, 3);

    // The stream: the same records, paged, and ready only at the end.
    let r = t
        .http
        .get(t.url("/internal/revocations/stream?after=0"))
        .send()
        .await
        .expect("stream");
    assert_eq!(r.status(), StatusCode::OK);
    let events = read_events(r, Duration::from_secs(30), |e| {
        matches!(e, RevocationEvent::Snapshot { complete: true, .. })
    })
    .await;
    let mut streamed = 0;
    for (i, e) in events.iter().enumerate() {
        let RevocationEvent::Snapshot {
            records, complete, ..
        } = e
        else {
            continue;
        };
        streamed += records.len();
        assert_eq!(
            *complete,
            i == events.len() - 1,
            "only the last page completes"
        );
    }
    assert_eq!(streamed, N);
}

async fn revocation_records_outlive_every_token_they_cover(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("leeway");
    t.register(&email, PASSWORD).await;
    let tokens = t.login(&email, PASSWORD).await;
    let claims = t.verify(&tokens.access).await;
    let r = t.post_auth("/auth/logout", &tokens.access, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let records = feed_records(&t).await;
    let record = records
        .iter()
        .find(|r| r.kind == RevocationKind::Session && r.subject == tokens.session_id)
        .expect("session record");
    // A sidecar may accept the token until exp + its leeway (at most
    // MAX_LEEWAY_SECS): the record must still be there then.
    assert!(
        record.expires_at >= claims.exp + MAX_LEEWAY_SECS,
        "record expires at {}, token accepted until {}",
        record.expires_at,
        claims.exp + MAX_LEEWAY_SECS
    );
}

async fn followers_are_bounded(backend: Backend) {
    let Some(t) = start_with(
        backend,
        std::sync::Arc::new(issuer::domain::clock::SystemClock),
        |a| {
            a.max_feed_followers = 1;
        },
    )
    .await
    else {
        return;
    };
    let stream = || {
        t.http
            .get(t.url("/internal/revocations/stream?after=0"))
            .send()
    };
    let first = stream().await.expect("first follower");
    assert_eq!(first.status(), StatusCode::OK);
    let second = stream().await.expect("second follower");
    let (status, code, _) = error_code(second).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "too_many_followers")
    );
    drop(first);
    let mut admitted = false;
    for _ in 0..200 {
        let r = stream().await.expect("follower");
        if r.status() == StatusCode::OK {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(admitted, "a place frees up when a follower leaves");
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// Follows the feed until its first heartbeat.
async fn follow_until_heartbeat(t: &TestIssuer) -> ByteStream {
    let r = t
        .http
        .get(t.url("/internal/revocations/stream?after=0"))
        .send()
        .await
        .expect("stream");
    let mut body: ByteStream = Box::pin(r.bytes_stream());
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: heartbeat") {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => panic!("no heartbeat within 10 s: {seen}"),
        }
    }
    body
}

/// What the feed says over a 4 s window, after discarding what was already
/// in flight: absence can only be observed over a window.
async fn next_four_seconds(body: &mut ByteStream) -> String {
    let settle = tokio::time::Instant::now() + Duration::from_millis(1_500);
    while let Ok(Some(Ok(_))) = tokio::time::timeout_at(settle, body.next()).await {}
    let mut said = String::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(until, body.next()).await {
        said.push_str(&String::from_utf8_lossy(&chunk));
    }
    said
}

async fn heartbeats_flow_only_while_the_database_answers(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let mut body = follow_until_heartbeat(&t).await;
    // The database goes away; the process (and its keep-alives) do not.
    t.server.state.store.close().await;
    let after = next_four_seconds(&mut body).await;
    assert!(
        !after.contains("event: heartbeat"),
        "heartbeat without a database: {after}"
    );
    assert!(after.contains(':'), "keep-alives still flow: {after:?}");
}

async fn the_jwks_version_grows_with_every_key_change(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let version = |set: &JwkSet| set.version;
    let jwks = || async {
        t.http
            .get(t.url("/.well-known/jwks.json"))
            .send()
            .await
            .expect("jwks")
            .json::<JwkSet>()
            .await
            .expect("json")
    };
    let before = version(&jwks().await);
    assert!(before >= 1, "the first key set is versioned");
    let admin = make_admin(&t).await;
    let r = t
        .post_auth("/admin/keys/rotate", &admin, Some(json!({"now": true})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let after = version(&jwks().await);
    assert!(after > before, "{after} > {before}");
}

/// Renames the revocations table behind the issuer's back: keys and users
/// still read fine, revocations do not.
async fn break_revocations(url: &str) {
    use sqlx::Connection;
    let sql = "ALTER TABLE revocations RENAME TO revocations_gone";
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::query(sql).execute(&mut c).await.expect("rename");
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
        sqlx::query(sql).execute(&mut c).await.expect("rename");
    }
}

async fn heartbeats_stop_when_only_revocations_cannot_be_read(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let mut body = follow_until_heartbeat(&t).await;
    break_revocations(&t._db.url).await;
    // The key-set version (another table) still reads fine…
    assert!(t.server.state.store.key_set_version().await.is_ok());
    let after = next_four_seconds(&mut body).await;
    // …but without revocations there is no proof of progress.
    assert!(
        !after.contains("event: heartbeat"),
        "heartbeat while revocations cannot be read: {after}"
    );
}
