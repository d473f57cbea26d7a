//! Background work: following the issuer's revocation feed (server-sent
//! events, resumed from the last sequence number seen), periodic full
//! reconciliation, JWKS refresh, policy reload and pruning.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use auth_types::RevocationEvent;
use futures_util::StreamExt;

use crate::authz::{now_ms, Authorizer};
use crate::metrics::OutcomeLabels;
use crate::policy::Policy;

/// A snapshot page of 5,000 records is well under this.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Follows `/internal/revocations/stream` forever, reconnecting with backoff.
pub async fn follow_revocations(authz: Arc<Authorizer>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match stream_once(&authz).await {
            Ok(()) => tracing::info!("revocation feed ended; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "revocation feed failed; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        if authz.feed_contact_ms.load(Ordering::Relaxed) > now_ms() - 10_000 {
            backoff = Duration::from_millis(100);
        }
    }
}

async fn stream_once(authz: &Arc<Authorizer>) -> anyhow::Result<()> {
    let after = authz.write_revocations().last_seq;
    let url = format!(
        "{}/internal/revocations/stream?after={after}",
        authz.settings.issuer_url
    );
    let mut request = authz
        .http()
        .get(url)
        .timeout(Duration::from_secs(365 * 86_400));
    if let Some(token) = &authz.settings.feed_token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?.error_for_status()?;
    // A key change pushed while we were disconnected would otherwise wait
    // for the next interval refresh.
    if let Err(e) = authz.fetch_jwks().await {
        tracing::warn!(error = %e, "JWKS fetch on feed reconnect failed");
    }
    // Likewise a permission map change.
    if let Err(e) = authz.fetch_permissions().await {
        tracing::warn!(error = %e, "permission map fetch on feed reconnect failed");
    }
    let mut body = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut event = String::new();
    let mut data = String::new();
    // The issuer sends a keep-alive every 2 s; silence for longer means the
    // connection is dead even if TCP has not noticed. Keep-alives only keep
    // the connection: freshness comes from events (see `apply_event`).
    while let Ok(next) = tokio::time::timeout(Duration::from_secs(30), body.next()).await {
        let Some(chunk) = next else { return Ok(()) };
        buffer.extend_from_slice(&chunk?);
        if buffer.len() > MAX_EVENT_BYTES {
            anyhow::bail!("feed event larger than {MAX_EVENT_BYTES} bytes");
        }
        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() {
                    handle_event(authz, &event, &data).await?;
                }
                event.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
    anyhow::bail!("revocation feed silent for 30 s")
}

async fn handle_event(authz: &Arc<Authorizer>, name: &str, data: &str) -> anyhow::Result<()> {
    let event: RevocationEvent = match serde_json::from_str(data) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(event = name, error = %e, "unreadable feed event");
            return Ok(());
        }
    };
    // The issuer has sent everything up to a heartbeat's sequence number
    // before the heartbeat: holding less means something was missed.
    if let RevocationEvent::Heartbeat { last_seq } = &event {
        let held = authz.write_revocations().last_seq;
        if *last_seq > held {
            anyhow::bail!("feed heartbeat at {last_seq} but only {held} applied; resuming");
        }
    }
    apply_event(authz, event).await;
    Ok(())
}

/// Applies one feed event. Complete snapshots, revocations, key changes and
/// heartbeats prove the issuer was reading its database, so they (and
/// nothing else: not keep-alives, not a snapshot's earlier pages) renew the
/// feed's freshness.
pub async fn apply_event(authz: &Arc<Authorizer>, event: RevocationEvent) {
    let mut progress = true;
    match event {
        RevocationEvent::Snapshot {
            records,
            last_seq,
            complete,
        } => {
            let mut set = authz.write_revocations();
            for r in &records {
                set.apply(r);
            }
            set.last_seq = set.last_seq.max(last_seq);
            drop(set);
            // Ready only once the whole snapshot is in, not after its first page.
            if complete {
                authz.revocations_synced.store(true, Ordering::Relaxed);
            } else {
                progress = false;
            }
        }
        RevocationEvent::Revoked { record } => {
            authz.write_revocations().apply(&record);
            let lag_ms = (now_ms() - record.created_at_ms).max(0);
            authz
                .metrics
                .revocation_lag_seconds
                .observe(lag_ms as f64 / 1000.0);
        }
        // Its own task: fetching (and retrying) must not hold up revocations.
        RevocationEvent::KeysChanged { version } => {
            let authz = authz.clone();
            tokio::spawn(async move { authz.keys_changed(version).await });
        }
        RevocationEvent::PermissionsChanged { version } => {
            let authz = authz.clone();
            tokio::spawn(async move { authz.permissions_changed(version).await });
        }
        RevocationEvent::Heartbeat { .. } => {}
    }
    if progress {
        authz.feed_contact_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// Re-reads every live revocation now and then: records only ever add, so a
/// union with what we hold repairs anything a reconnect might have missed.
pub async fn reconcile(authz: Arc<Authorizer>) {
    let every = Duration::from_secs(authz.settings.reconcile_secs);
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = reconcile_once(&authz).await {
            tracing::warn!(error = %e, "revocation reconciliation failed");
        }
    }
}

pub async fn reconcile_once(authz: &Arc<Authorizer>) -> anyhow::Result<()> {
    let mut after = 0;
    // Page by page; each page is bounded by the issuer.
    loop {
        let url = format!(
            "{}/internal/revocations?after={after}",
            authz.settings.issuer_url
        );
        let mut request = authz.http().get(url).timeout(Duration::from_secs(30));
        if let Some(token) = &authz.settings.feed_token {
            request = request.bearer_auth(token);
        }
        let event: RevocationEvent = request.send().await?.error_for_status()?.json().await?;
        let next = match &event {
            RevocationEvent::Snapshot {
                complete: false,
                last_seq,
                ..
            } if *last_seq > after => Some(*last_seq),
            RevocationEvent::Snapshot { .. } => None,
            _ => anyhow::bail!("unexpected reconciliation answer"),
        };
        apply_event(authz, event).await;
        match next {
            Some(seq) => after = seq,
            None => return Ok(()),
        }
    }
}

pub async fn refresh_jwks(authz: Arc<Authorizer>) {
    let every = Duration::from_secs(authz.settings.jwks_refresh_secs);
    loop {
        tokio::time::sleep(every).await;
        match authz.fetch_jwks().await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; serving last-known keys"),
        }
    }
}

/// Reloads the policy when its file changes; an invalid new version keeps
/// the old policy in force.
pub async fn watch_policy(authz: Arc<Authorizer>) {
    let path = authz.policy_path();
    let modified = |p: &std::path::Path| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let mut seen = modified(&path);
    let every = Duration::from_secs(authz.settings.policy_reload_secs);
    loop {
        tokio::time::sleep(every).await;
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match Policy::load(&path) {
            Ok(policy) => {
                tracing::info!(path = %path.display(), rules = policy.rules.len(), "policy reloaded");
                authz.replace_policy(policy);
                authz
                    .metrics
                    .policy_reloads
                    .get_or_create(&OutcomeLabels { outcome: "ok" })
                    .inc();
            }
            Err(e) => {
                tracing::error!(error = %e, "new policy is invalid; keeping the previous one");
                authz
                    .metrics
                    .policy_reloads
                    .get_or_create(&OutcomeLabels { outcome: "invalid" })
                    .inc();
            }
        }
    }
}

/// Prunes expired revocations and saves the set for a restart without the
/// issuer; refreshes the age gauges.
pub async fn housekeeping(authz: Arc<Authorizer>) {
    let mut saved_seq = 0;
    let mut ticks: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        ticks += 1;
        let now = now_ms();
        if ticks.is_multiple_of(6) {
            authz.write_revocations().prune(now.div_euclid(1000));
        }
        saved_seq = authz.save_revocations(saved_seq);
        authz.update_age_metrics(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth_types::{JwkSet, RevocationKind, RevocationRecord};

    fn authorizer() -> Arc<Authorizer> {
        let settings = crate::config::Settings::for_tests("http://127.0.0.1:1", "p".into());
        Arc::new(
            Authorizer::new(
                settings,
                Policy::default(),
                Arc::new(crate::metrics::Metrics::default()),
            )
            .expect("authorizer"),
        )
    }

    fn record(seq: i64) -> RevocationRecord {
        RevocationRecord {
            seq,
            kind: RevocationKind::Session,
            subject: format!("s{seq}"),
            issued_before: 0,
            created_at_ms: 0,
            expires_at: i64::MAX,
        }
    }

    #[tokio::test]
    async fn only_the_last_snapshot_page_makes_a_follower_ready() {
        let authz = authorizer();
        apply_event(
            &authz,
            RevocationEvent::Snapshot {
                records: (1..=3).map(record).collect(),
                last_seq: 3,
                complete: false,
            },
        )
        .await;
        assert!(!authz.revocations_synced.load(Ordering::Relaxed));
        assert_eq!(authz.write_revocations().len(), 3);
        assert_eq!(
            authz.feed_contact_ms.load(Ordering::Relaxed),
            0,
            "an earlier page is not yet progress"
        );
        // Decisions wait for the whole snapshot, whatever the probe says:
        // even with fresh keys and a fresh feed.
        authz.install_jwks(
            &JwkSet {
                keys: vec![ed_key("k1")],
                version: 1,
            },
            now_ms(),
        );
        authz.feed_contact_ms.store(now_ms(), Ordering::Relaxed);
        let d = authz
            .check(
                crate::decision::RequestAttrs {
                    method: "GET",
                    host: "h",
                    path: "/x",
                },
                Default::default(),
                now_ms(),
            )
            .await;
        assert!(matches!(
            d,
            crate::decision::Decision::Deny {
                reason: crate::decision::DenyReason::StaleState,
                ..
            }
        ));
        apply_event(
            &authz,
            RevocationEvent::Snapshot {
                records: vec![record(4)],
                last_seq: 9,
                complete: true,
            },
        )
        .await;
        assert!(authz.revocations_synced.load(Ordering::Relaxed));
        assert_eq!(authz.write_revocations().last_seq, 9);
    }

    #[tokio::test]
    async fn events_renew_freshness_and_nothing_else_does() {
        let authz = authorizer();
        assert_eq!(authz.feed_contact_ms.load(Ordering::Relaxed), 0);
        apply_event(&authz, RevocationEvent::Heartbeat { last_seq: 0 }).await;
        assert!(authz.feed_contact_ms.load(Ordering::Relaxed) > now_ms() - 5_000);
    }

    fn ed_key(kid: &str) -> auth_types::Jwk {
        auth_types::Jwk {
            kty: "OKP".into(),
            kid: kid.into(),
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
            crv: Some("Ed25519".into()),
            x: Some(auth_types::jws::b64url_encode(&[7u8; 32])),
            y: None,
            n: None,
            e: None,
        }
    }

    #[test]
    fn an_older_key_set_never_replaces_a_newer_one() {
        let authz = authorizer();
        let key = ed_key;
        let newer = JwkSet {
            keys: vec![key("k-new")],
            version: 5,
        };
        let older = JwkSet {
            keys: vec![key("k-old"), key("k-new")],
            version: 4,
        };
        authz.install_jwks(&newer, 1);
        assert!(!authz.install_jwks(&older, 2), "older set refused");
        assert_eq!(authz.key_set_version(), 5);
        let same = JwkSet {
            keys: vec![key("k-new"), key("k-next")],
            version: 6,
        };
        assert!(authz.install_jwks(&same, 3));
        assert_eq!(authz.key_set_version(), 6);
    }
}
