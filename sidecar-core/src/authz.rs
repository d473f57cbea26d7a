//! The sidecar's state (keys, revocations, policy, verified-token cache) and
//! the per-request path that feeds the pure decision.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use auth_types::jws::{self, JwsError};
use auth_types::{AccessClaims, Expectations, JwkSet, PermissionMap, VerifyingKeySet};
use moka::sync::Cache;
use ring::digest::{digest, SHA256};

use crate::config::Settings;
use crate::decision::{decide_routed, Decision, DenyReason, RequestAttrs, TokenInput};
use crate::metrics::{DecisionLabels, Metrics, OutcomeLabels};
use crate::policy::Policy;
use crate::quota::QuotaVerdict;
use crate::revocations::RevocationSet;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct KeyState {
    set: VerifyingKeySet,
    /// The issuer's key-set version (0: unversioned).
    version: i64,
    /// When the issuer last answered a JWKS fetch (0: never).
    fetched_at_ms: i64,
}

/// A token that passed signature and header checks, until it expires.
#[derive(Clone)]
struct CachedToken {
    claims: Arc<AccessClaims>,
    kid: String,
}

struct UntilTokenExpiry;

impl moka::Expiry<[u8; 32], CachedToken> for UntilTokenExpiry {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        value: &CachedToken,
        _: Instant,
    ) -> Option<Duration> {
        let remaining_ms = value.claims.exp * 1000 - now_ms();
        Some(Duration::from_millis(remaining_ms.max(0) as u64))
    }
}

pub struct Authorizer {
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    http: reqwest::Client,
    expect: Expectations,
    keys: ArcSwap<KeyState>,
    /// Serialises JWKS fetches; holds when the last fetch for an unknown
    /// `kid` started (ms), for the cooldown.
    fetch_gate: tokio::sync::Mutex<i64>,
    pub revocations: RwLock<RevocationSet>,
    /// When the revocation feed last said anything (0: never).
    pub feed_contact_ms: AtomicI64,
    /// A full snapshot of revocations has been applied.
    pub revocations_synced: AtomicBool,
    policy: ArcSwap<Policy>,
    /// The issuer's role → permission map (version 0: not fetched yet).
    permissions: ArcSwap<PermissionMap>,
    /// Serialises installing maps, so an older one can never replace a
    /// newer one between the version check and the store.
    permissions_gate: std::sync::Mutex<()>,
    /// A fetch is under way (announcements arrive every heartbeat).
    permissions_fetching: AtomicBool,
    tokens: Cache<[u8; 32], CachedToken>,
    quotas: crate::quota::Quotas,
    /// DPoP proofs' `jti`s seen (RFC 9449 §11.1).
    dpop_seen: crate::dpop::ReplayCache,
}

/// What a request carries for the decision: its token, and for DPoP the
/// scheme, the proof and where the request went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credential<'a> {
    pub token: Option<&'a str>,
    pub dpop: crate::dpop::Presented<'a>,
    pub target: crate::dpop::Target<'a>,
}

impl<'a> Credential<'a> {
    /// A token under the Bearer scheme, no proof.
    pub fn bearer(token: &'a str) -> Self {
        Credential {
            token: Some(token),
            ..Default::default()
        }
    }
}

impl Authorizer {
    /// No key set has ever been fetched or loaded.
    pub fn fetch_jwks_needed(&self) -> bool {
        self.keys.load().set.is_empty()
    }

    pub fn new(settings: Settings, policy: Policy, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(2))
            // rustls with the system's roots (plus --issuer-ca-file below).
            .use_rustls_tls()
            .https_only(settings.issuer_url.starts_with("https://"));
        if let Some(path) = &settings.issuer_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--issuer-ca-file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("--issuer-ca-file {}: {e}", path.display()))?;
            if certs.is_empty() {
                anyhow::bail!("--issuer-ca-file {}: no certificates", path.display());
            }
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build()?;
        let expect = Expectations {
            issuer: settings.expected_issuer(),
            audience: settings.audience.clone(),
            leeway_secs: settings.leeway_secs,
        };
        let tokens = Cache::builder()
            .max_capacity(settings.token_cache_capacity)
            .expire_after(UntilTokenExpiry)
            .build();
        Ok(Authorizer {
            settings,
            metrics,
            http,
            expect,
            keys: ArcSwap::from_pointee(KeyState {
                set: VerifyingKeySet::default(),
                version: 0,
                fetched_at_ms: 0,
            }),
            fetch_gate: tokio::sync::Mutex::new(0),
            revocations: RwLock::new(RevocationSet::default()),
            feed_contact_ms: AtomicI64::new(0),
            revocations_synced: AtomicBool::new(false),
            policy: ArcSwap::from_pointee(policy),
            permissions: ArcSwap::from_pointee(PermissionMap::default()),
            permissions_gate: std::sync::Mutex::new(()),
            permissions_fetching: AtomicBool::new(false),
            tokens,
            quotas: Default::default(),
            // A minute of proofs at ~1,600 a second.
            dpop_seen: crate::dpop::ReplayCache::new(100_000),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    // ---- the request path ----

    /// Decides one request. `now_ms` is read once by the caller.
    pub async fn check(
        &self,
        request: RequestAttrs<'_>,
        credential: Credential<'_>,
        now_ms: i64,
    ) -> Decision {
        let token = credential.token;
        let started = Instant::now();
        let decision = if self.is_stale(now_ms) {
            Decision::deny(None, DenyReason::StaleState)
        } else {
            let policy = self.policy.load();
            // Route once. Only verify when the rule needs a token; verification
            // may await a JWKS refetch, so it happens before the pure decision.
            let route = policy.route(request.host, request.method, request.path);
            let (quota, dpop_required) = match &route {
                crate::policy::Route::Matched(m) => (m.rule.quota, m.rule.dpop),
                _ => (None, false),
            };
            let needs_token = matches!(&route, crate::policy::Route::Matched(m)
                if m.rule.requirement != crate::policy::Requirement::Public);
            let input = match token {
                Some(t) if needs_token => match self.verify(t, now_ms).await {
                    TokenInput::Verified(claims) => match crate::dpop::check_bound(
                        &claims,
                        credential.dpop,
                        t,
                        request.method,
                        credential.target,
                        &self.dpop_seen,
                        now_ms.div_euclid(1000),
                    ) {
                        Ok(()) => TokenInput::Verified(claims),
                        Err(reason) => TokenInput::Invalid(reason),
                    },
                    other => other,
                },
                _ => TokenInput::Missing,
            };
            let revocations = self.read_revocations();
            let permissions = self.permissions.load();
            let decision = decide_routed(
                route,
                || input,
                &revocations,
                &permissions,
                &self.expect,
                now_ms.div_euclid(1000),
            );
            drop(revocations);
            let decision = crate::dpop::enforce(decision, credential.dpop, dpop_required);
            match quota {
                Some(quota) => self.spend_quota(decision, quota, now_ms),
                None => decision,
            }
        };
        self.metrics
            .check_seconds
            .observe(started.elapsed().as_secs_f64());
        let labels = match &decision {
            Decision::Allow { .. } => DecisionLabels {
                decision: "allow",
                reason: "ok",
            },
            Decision::Deny { reason, .. } => DecisionLabels {
                decision: "deny",
                reason: reason.code(),
            },
        };
        self.metrics.checks.get_or_create(&labels).inc();
        decision
    }

    /// An allowed request spends one from the user's quota on its rule; a
    /// spent quota turns it into a 429.
    fn spend_quota(
        &self,
        decision: Decision,
        quota: crate::policy::Quota,
        now_ms: i64,
    ) -> Decision {
        let Decision::Allow {
            rule,
            identity: Some(claims),
        } = decision
        else {
            return decision;
        };
        match self.quotas.check(&rule, &claims.sub, quota, now_ms) {
            QuotaVerdict::Allowed => {}
            QuotaVerdict::Untracked => {
                self.metrics.quota_untracked.inc();
            }
            QuotaVerdict::Exceeded { retry_after_secs } => {
                return Decision::Deny {
                    rule: Some(rule),
                    reason: DenyReason::QuotaExceeded,
                    allow: None,
                    retry_after: Some(retry_after_secs),
                    step_up: None,
                }
            }
        }
        Decision::Allow {
            rule,
            identity: Some(claims),
        }
    }

    /// A decision made before the policy is consulted (the adapter refused
    /// the request's shape); counted like any other.
    pub fn refuse(&self, reason: DenyReason) -> Decision {
        self.metrics
            .checks
            .get_or_create(&DecisionLabels {
                decision: "deny",
                reason: reason.code(),
            })
            .inc();
        Decision::deny(None, reason)
    }

    fn read_revocations(&self) -> std::sync::RwLockReadGuard<'_, RevocationSet> {
        // A panic while holding the lock cannot leave the set half-updated in
        // a way that allows more than before, so a poisoned lock is still usable.
        self.revocations.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write_revocations(&self) -> std::sync::RwLockWriteGuard<'_, RevocationSet> {
        self.revocations.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Signature and header checks, through the verified-token cache.
    async fn verify(&self, token: &str, now_ms: i64) -> TokenInput {
        if token.len() > jws::MAX_TOKEN_LEN {
            return TokenInput::Invalid(DenyReason::MalformedToken);
        }
        let key: [u8; 32] = match digest(&SHA256, token.as_bytes()).as_ref().try_into() {
            Ok(k) => k,
            Err(_) => return TokenInput::Invalid(DenyReason::MalformedToken),
        };
        if let Some(hit) = self.tokens.get(&key) {
            // A key removed from the set (emergency revoke) invalidates its tokens.
            if self.keys.load().set.get(&hit.kid).is_some() {
                self.metrics
                    .token_cache
                    .get_or_create(&OutcomeLabels { outcome: "hit" })
                    .inc();
                return TokenInput::Verified(hit.claims);
            }
            self.tokens.invalidate(&key);
        }
        self.metrics
            .token_cache
            .get_or_create(&OutcomeLabels { outcome: "miss" })
            .inc();
        let mut result = jws::verify(token, &self.keys.load().set);
        if let Err(JwsError::UnknownKid(kid)) = &result {
            if self.refetch_for_unknown_kid(kid, now_ms).await {
                result = jws::verify(token, &self.keys.load().set);
            }
        }
        match result {
            Ok(verified) => {
                let claims = Arc::new(verified.claims);
                self.tokens.insert(
                    key,
                    CachedToken {
                        claims: claims.clone(),
                        kid: verified.kid,
                    },
                );
                TokenInput::Verified(claims)
            }
            Err(e) => TokenInput::Invalid(DenyReason::from_jws(&e)),
        }
    }

    // ---- state freshness ----

    /// Past the max staleness without hearing from the issuer, or before the
    /// whole revocation snapshot is in: fail closed. (Envoy asks whether or
    /// not the readiness probe passes, so readiness alone is not enough.)
    pub fn is_stale(&self, now_ms: i64) -> bool {
        if !self.revocations_synced.load(Ordering::Relaxed) {
            return true;
        }
        let limit = self.settings.max_staleness_secs as i64 * 1000;
        let keys_at = self.keys.load().fetched_at_ms;
        let feed_at = self.feed_contact_ms.load(Ordering::Relaxed);
        now_ms - keys_at > limit || now_ms - feed_at > limit
    }

    pub fn is_ready(&self, now_ms: i64) -> bool {
        !self.keys.load().set.is_empty()
            && self.permissions_version() > 0
            && self.revocations_synced.load(Ordering::Relaxed)
            && !self.is_stale(now_ms)
    }

    pub fn update_age_metrics(&self, now_ms: i64) {
        let keys = self.keys.load();
        self.metrics
            .jwks_age_seconds
            .set((now_ms - keys.fetched_at_ms) as f64 / 1000.0);
        self.metrics.jwks_keys.set(keys.set.len() as i64);
        let feed = self.feed_contact_ms.load(Ordering::Relaxed);
        self.metrics
            .revocation_feed_age_seconds
            .set((now_ms - feed) as f64 / 1000.0);
        let revocations = self.read_revocations();
        self.metrics.revocations.set(revocations.len() as i64);
        self.metrics.revocation_seq.set(revocations.last_seq);
    }

    // ---- JWKS ----

    fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.settings.issuer_url)
    }

    /// Fetches the key set now. Returns whether the set of kids changed.
    pub async fn fetch_jwks(&self) -> anyhow::Result<bool> {
        let _gate = self.fetch_gate.lock().await;
        self.fetch_jwks_locked().await
    }

    async fn fetch_jwks_locked(&self) -> anyhow::Result<bool> {
        let result: anyhow::Result<JwkSet> = async {
            let response = self
                .http
                .get(self.jwks_url())
                .send()
                .await?
                .error_for_status()?;
            Ok(response.json::<JwkSet>().await?)
        }
        .await;
        let jwks = match result {
            Ok(j) => j,
            Err(e) => {
                self.metrics
                    .jwks_fetches
                    .get_or_create(&OutcomeLabels { outcome: "error" })
                    .inc();
                return Err(e);
            }
        };
        self.metrics
            .jwks_fetches
            .get_or_create(&OutcomeLabels { outcome: "ok" })
            .inc();
        if let Some(dir) = &self.settings.state_dir {
            let path = dir.join(JWKS_FILE);
            if let Err(e) = write_atomically(&path, &serde_json::to_vec(&jwks)?) {
                tracing::warn!(error = %e, path = %path.display(), "cannot save the key set");
            }
        }
        Ok(self.install_jwks(&jwks, now_ms()))
    }

    /// Replaces the key set (from a fetch, saved state, or a benchmark),
    /// unless it is older than the one held: a replica that has not caught
    /// up must not bring back a key that was revoked.
    pub fn install_jwks(&self, jwks: &JwkSet, fetched_at_ms: i64) -> bool {
        let old = self.keys.load();
        if jwks.version < old.version {
            tracing::info!(
                offered = jwks.version,
                held = old.version,
                "ignoring an older key set"
            );
            self.metrics
                .jwks_fetches
                .get_or_create(&OutcomeLabels { outcome: "older" })
                .inc();
            return false;
        }
        let (set, skipped) = VerifyingKeySet::from_jwks(jwks);
        for e in skipped {
            tracing::warn!(error = %e, "ignoring unusable JWK");
        }
        let mut old_kids: Vec<&str> = old.set.kids().collect();
        let mut new_kids: Vec<&str> = set.kids().collect();
        old_kids.sort_unstable();
        new_kids.sort_unstable();
        let changed = old_kids != new_kids;
        if changed {
            tracing::info!(kids = ?new_kids, "key set changed");
        }
        self.keys.store(Arc::new(KeyState {
            set,
            version: jwks.version,
            fetched_at_ms,
        }));
        changed
    }

    pub fn key_set_version(&self) -> i64 {
        self.keys.load().version
    }

    /// Loads the last-known keys and revocations an earlier run saved. Their
    /// age counts from when they were saved, so staleness still bounds them.
    pub fn load_saved_state(&self) -> bool {
        let Some(dir) = &self.settings.state_dir else {
            return false;
        };
        let (jwks_path, revocations_path) = (dir.join(JWKS_FILE), dir.join(REVOCATIONS_FILE));
        let jwks = std::fs::read(&jwks_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<JwkSet>(&b).ok())
            .filter(|j| !j.keys.is_empty());
        let revocations = std::fs::read(&revocations_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<RevocationSet>(&b).ok());
        // Keys without revocations would let revoked tokens through: both or neither.
        let (Some(jwks), Some(revocations)) = (jwks, revocations) else {
            return false;
        };
        self.install_jwks(&jwks, modified_ms(&jwks_path));
        // Optional: without it, permission rules deny until the issuer answers.
        if let Some(map) = std::fs::read(dir.join(PERMISSIONS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<PermissionMap>(&b).ok())
        {
            self.install_permissions(map);
        }
        *self.write_revocations() = revocations;
        self.feed_contact_ms
            .store(modified_ms(&revocations_path), Ordering::Relaxed);
        self.revocations_synced.store(true, Ordering::Relaxed);
        tracing::warn!(dir = %dir.display(), "issuer unreachable: serving last-known keys and revocations");
        true
    }

    /// Saves the revocation set if it changed since `saved_seq`; returns the
    /// sequence number saved.
    pub fn save_revocations(&self, saved_seq: i64) -> i64 {
        let Some(dir) = &self.settings.state_dir else {
            return saved_seq;
        };
        let snapshot = {
            let set = self.read_revocations();
            if set.last_seq == saved_seq {
                return saved_seq;
            }
            set.clone()
        };
        let path = dir.join(REVOCATIONS_FILE);
        let written = serde_json::to_vec(&snapshot)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&path, &bytes));
        match written {
            Ok(()) => snapshot.last_seq,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "cannot save revocations");
                saved_seq
            }
        }
    }

    /// One fetch in flight however many requests miss, and at most one per
    /// cooldown, so junk `kid`s cannot hammer the issuer.
    async fn refetch_for_unknown_kid(&self, kid: &str, now_ms: i64) -> bool {
        let mut last_unknown_kid_fetch = self.fetch_gate.lock().await;
        if self.keys.load().set.get(kid).is_some() {
            return true; // another request's fetch brought it
        }
        if now_ms - *last_unknown_kid_fetch < self.settings.unknown_kid_cooldown_ms as i64 {
            return false;
        }
        *last_unknown_kid_fetch = now_ms;
        if let Err(e) = self.fetch_jwks_locked().await {
            tracing::warn!(error = %e, "JWKS refetch for unknown kid failed");
        }
        self.keys.load().set.get(kid).is_some()
    }

    /// Called when the issuer says the key set changed (to `version`, or
    /// 0 if unknown). Behind a load balancer the fetch may reach a replica
    /// that has not caught up yet: retry briefly until the version arrives.
    pub async fn keys_changed(&self, version: i64) {
        let mut wait = Duration::from_millis(50);
        for attempt in 0..8 {
            match self.fetch_jwks().await {
                // Tokens of removed keys must not be served from the cache.
                Ok(true) => self.tokens.invalidate_all(),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, attempt, "JWKS fetch after key change failed"),
            }
            if self.key_set_version() >= version {
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        tracing::warn!(
            version,
            "key change announced but not yet served; the interval refresh will pick it up"
        );
    }

    // ---- the role → permission map ----

    pub fn permissions_version(&self) -> i64 {
        self.permissions.load().version
    }

    /// Fetches the map; installs it unless older than the one held.
    pub async fn fetch_permissions(&self) -> anyhow::Result<()> {
        let mut request = self
            .http
            .get(format!("{}/internal/permissions", self.settings.issuer_url));
        if let Some(token) = &self.settings.feed_token {
            request = request.bearer_auth(token);
        }
        let map: PermissionMap = request.send().await?.error_for_status()?.json().await?;
        self.install_permissions(map);
        Ok(())
    }

    pub fn install_permissions(&self, map: PermissionMap) {
        let _gate = self
            .permissions_gate
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if map.version < self.permissions_version() {
            return;
        }
        self.metrics.permissions_version.set(map.version);
        let map = Arc::new(map);
        self.permissions.store(map.clone());
        if let Some(dir) = &self.settings.state_dir {
            let path = dir.join(PERMISSIONS_FILE);
            let saved = serde_json::to_vec(&*map)
                .map_err(std::io::Error::other)
                .and_then(|bytes| write_atomically(&path, &bytes));
            if let Err(e) = saved {
                tracing::warn!(error = %e, "cannot save the permission map");
            }
        }
    }

    /// The issuer holds map `version` (announced at every change and with
    /// every heartbeat): fetch until we hold it too. One fetch at a time;
    /// a failed one is retried briefly here, and again at the next
    /// heartbeat, so a sidecar never stays behind.
    pub async fn permissions_changed(&self, version: i64) {
        if self.permissions_version() >= version
            || self.permissions_fetching.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let mut wait = Duration::from_millis(50);
        for attempt in 0..5 {
            if let Err(e) = self.fetch_permissions().await {
                tracing::warn!(error = %e, attempt, "permission map fetch failed");
            } else if self.permissions_version() >= version {
                break;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
        self.permissions_fetching.store(false, Ordering::Release);
    }

    // ---- policy ----

    pub fn replace_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    pub fn policy_path(&self) -> PathBuf {
        self.settings.policy.clone()
    }
}

const JWKS_FILE: &str = "jwks.json";
const PERMISSIONS_FILE: &str = "permissions.json";
const REVOCATIONS_FILE: &str = "revocations.json";

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Unique per writer: two saves at once must not share a temp file.
    static SEQ: AtomicI64 = AtomicI64::new(0);
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

fn modified_ms(path: &std::path::Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}
