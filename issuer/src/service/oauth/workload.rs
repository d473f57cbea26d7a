//! Workload identity without secrets: a pod presents the service-account
//! token its cluster projected into it as a JWT bearer grant (RFC 7523
//! §2.1) and gets our token for the service (client) its namespace and
//! service account are mapped to, as `client_credentials` would give it.
//! Trust is configured per cluster (`--workload-trust FILE`): its issuer,
//! its keys (a JWKS file, or its URL on the API server), the audience its
//! tokens must be requested for, and the mapping.

use std::collections::BTreeMap;
use std::time::Duration;

use auth_types::jws::{peek_claims, verify_assertion, VerifyingKeySet};
use auth_types::{Audience, JwkSet};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::service::error::{Error, Kind, Result};

/// Clock difference allowed between a cluster and us.
const LEEWAY_SECS: i64 = 30;
/// A fetched key set is used this long before it is fetched again.
const KEYS_FRESH_SECS: i64 = 300;
/// Fetches are tried at most this often: an unknown `kid` (a key
/// rotation), or keys gone stale, fetch again no sooner after the last try,
/// whether it worked or not.
const REFETCH_SECS: i64 = 30;
/// While the cluster cannot be reached, keys fetched this long ago still
/// verify; older ones do not (a key the cluster rotated out must end).
const MAX_STALE_SECS: i64 = 3600;
/// A cluster's key set is small: more is refused.
const MAX_JWKS_BYTES: usize = 64 * 1024;

/// The file's form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    clusters: Vec<ClusterFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    name: String,
    /// The cluster's `--service-account-issuer`: the tokens' `iss`.
    issuer: String,
    jwks_file: Option<std::path::PathBuf>,
    jwks_uri: Option<String>,
    /// CA certificates (PEM) for `jwks_uri`, beside the system's: an
    /// in-cluster API server's.
    ca_file: Option<std::path::PathBuf>,
    /// The `aud` its tokens must carry (the projected volume's `audience`);
    /// left out: this issuer's URL.
    audience: Option<String>,
    /// The longest a token may be good for, from `iat` (seconds; 1 hour).
    #[serde(default = "default_max_lifetime")]
    max_token_lifetime: i64,
    /// `namespace/serviceaccount` → client id.
    accounts: BTreeMap<String, String>,
}

fn default_max_lifetime() -> i64 {
    3600
}

enum Keys {
    Fixed(VerifyingKeySet),
    Fetched {
        uri: String,
        http: reqwest::Client,
        /// Held across a fetch: one fetch at a time per cluster.
        cache: Mutex<Fetched>,
    },
}

#[derive(Default)]
struct Fetched {
    /// When last fetched (Unix seconds), and what.
    keys: Option<(i64, VerifyingKeySet)>,
    /// When a fetch was last tried.
    tried_at: Option<i64>,
}

struct Cluster {
    name: String,
    issuer: String,
    audience: Option<String>,
    max_lifetime: i64,
    accounts: BTreeMap<String, String>,
    keys: Keys,
}

/// The clusters whose workloads are trusted; none without the setting.
#[derive(Default)]
pub struct WorkloadTrust {
    clusters: Vec<Cluster>,
}

/// Who a verified token stands for.
#[derive(Debug, Clone)]
pub struct Workload {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
    pub pod: Option<String>,
    pub client_id: String,
}

#[derive(Deserialize)]
struct Peeked {
    iss: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    aud: Audience,
    exp: i64,
    iat: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    serviceaccount: Option<Named>,
    #[serde(default)]
    pod: Option<Named>,
    /// Set when the cluster extends tokens past what was asked for (for
    /// old clients): the expiry the pod asked for.
    #[serde(default)]
    warnafter: Option<i64>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

fn invalid_grant(message: impl Into<String>) -> Error {
    Error::bad_request("invalid_grant", message)
}

impl WorkloadTrust {
    /// Reads the trust file; every problem in it stops the issuer.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<WorkloadTrust> {
        let Some(path) = path else {
            return Ok(WorkloadTrust::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--workload-trust {}: {e}", path.display()))?;
        let file: TrustFile = yaml_serde::from_str(&text)
            .map_err(|e| anyhow::anyhow!("--workload-trust {}: {e}", path.display()))?;
        let mut clusters = Vec::new();
        for c in file.clusters {
            let bad = |m: &str| anyhow::anyhow!("--workload-trust: cluster {:?}: {m}", c.name);
            if clusters.iter().any(|k: &Cluster| k.issuer == c.issuer) {
                return Err(bad("another cluster has this issuer"));
            }
            // The API server's own audience is its issuer: every pod's
            // API token would pass.
            if c.audience.as_deref() == Some(c.issuer.as_str()) {
                return Err(bad(
                    "audience: not the cluster's issuer (every API token carries it); \
                     a projected token's own audience, such as this issuer's URL",
                ));
            }
            if !(60..=86_400).contains(&c.max_token_lifetime) {
                return Err(bad("max_token_lifetime: 60 to 86400 seconds"));
            }
            for (account, client) in &c.accounts {
                let parts: Vec<&str> = account.split('/').collect();
                if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) || client.is_empty() {
                    return Err(bad(&format!(
                        "accounts: {account:?}: namespace/serviceaccount → client_id"
                    )));
                }
            }
            let keys = match (&c.jwks_file, &c.jwks_uri) {
                (Some(file), None) => {
                    let text = std::fs::read_to_string(file)
                        .map_err(|e| bad(&format!("jwks_file {}: {e}", file.display())))?;
                    let set: JwkSet = serde_json::from_str(&text)
                        .map_err(|e| bad(&format!("jwks_file: not a JWK Set ({e})")))?;
                    let (keys, _) = VerifyingKeySet::from_jwks(&set);
                    Keys::Fixed(keys)
                }
                (None, Some(uri)) => {
                    if !secure_url(uri) {
                        return Err(bad("jwks_uri: https (http only on loopback)"));
                    }
                    let mut http = reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .timeout(Duration::from_secs(5));
                    if let Some(ca) = &c.ca_file {
                        let pem = std::fs::read(ca)
                            .map_err(|e| bad(&format!("ca_file {}: {e}", ca.display())))?;
                        for cert in reqwest::Certificate::from_pem_bundle(&pem)
                            .map_err(|e| bad(&format!("ca_file: {e}")))?
                        {
                            http = http.add_root_certificate(cert);
                        }
                    }
                    Keys::Fetched {
                        uri: uri.clone(),
                        http: http.build()?,
                        cache: Mutex::new(Fetched::default()),
                    }
                }
                _ => return Err(bad("one of jwks_file or jwks_uri")),
            };
            clusters.push(Cluster {
                name: c.name,
                issuer: c.issuer,
                audience: c.audience,
                max_lifetime: c.max_token_lifetime,
                accounts: c.accounts,
                keys,
            });
        }
        Ok(WorkloadTrust { clusters })
    }

    /// Verifies a cluster's token (RFC 7523 §3): a trusted `iss`, its
    /// signature by that cluster's keys, `aud` the configured audience,
    /// live (`exp`, `nbf`, `iat`, with 30 s of leeway) and not good for
    /// longer than the cluster allows, and a service account mapped to a
    /// client. `issuer_url` is ours (the default audience).
    pub async fn verify(&self, assertion: &str, issuer_url: &str, now: i64) -> Result<Workload> {
        let iss = peek_claims::<Peeked>(assertion)
            .map(|p| p.iss)
            .ok_or_else(|| invalid_grant("assertion: not a JWT"))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.issuer == iss)
            .ok_or_else(|| invalid_grant("assertion: its issuer is not a trusted cluster"))?;
        let claims = self.verified(cluster, assertion, now).await?;
        let audience = cluster.audience.as_deref().unwrap_or(issuer_url);
        if !claims.aud.contains(audience) {
            return Err(invalid_grant(format!(
                "assertion: aud must include {audience}"
            )));
        }
        // A cluster that extends tokens for old clients says, in
        // `warnafter`, when the one asked for ends: that is its expiry here.
        let k8s = claims.kubernetes.as_ref();
        let exp = k8s
            .and_then(|k| k.warnafter)
            .map_or(claims.exp, |w| w.min(claims.exp));
        if exp <= now - LEEWAY_SECS {
            return Err(invalid_grant("assertion: expired"));
        }
        if claims.iat > now + LEEWAY_SECS || claims.nbf.is_some_and(|t| t > now + LEEWAY_SECS) {
            return Err(invalid_grant("assertion: not valid yet"));
        }
        let lifetime = exp.checked_sub(claims.iat);
        if claims.iat <= 0 || lifetime.is_none_or(|l| l > cluster.max_lifetime) {
            return Err(invalid_grant(format!(
                "assertion: good for longer than {} s (ask for a shorter expirationSeconds)",
                cluster.max_lifetime
            )));
        }
        let (namespace, service_account) = claims
            .sub
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(|| invalid_grant("assertion: sub is not a service account"))?;
        // The structured claims, where the cluster gives them, agree.
        let disagrees = k8s.is_some_and(|k| {
            k.namespace.as_deref().is_some_and(|n| n != namespace)
                || k.serviceaccount
                    .as_ref()
                    .is_some_and(|s| s.name != service_account)
        });
        if disagrees {
            return Err(invalid_grant("assertion: sub and kubernetes.io disagree"));
        }
        let client_id = cluster
            .accounts
            .get(&format!("{namespace}/{service_account}"))
            .ok_or_else(|| {
                invalid_grant("assertion: this service account is not mapped to a client")
            })?;
        Ok(Workload {
            cluster: cluster.name.clone(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            pod: k8s.and_then(|k| k.pod.as_ref()).map(|p| p.name.clone()),
            client_id: client_id.clone(),
        })
    }

    async fn verified(&self, cluster: &Cluster, assertion: &str, now: i64) -> Result<Claims> {
        let bad_signature = |e: auth_types::jws::JwsError| invalid_grant(format!("assertion: {e}"));
        let (uri, http, cache) = match &cluster.keys {
            Keys::Fixed(keys) => return verify_assertion(assertion, keys).map_err(bad_signature),
            Keys::Fetched { uri, http, cache } => (uri, http, cache),
        };
        // One fetch at a time, and one try per REFETCH_SECS whatever its
        // outcome: tokens naming unknown keys (anyone can send one) cannot
        // make a fetch per request.
        let mut cache = cache.lock().await;
        let fresh = |c: &Fetched| {
            c.keys
                .as_ref()
                .is_some_and(|(at, _)| now - at < KEYS_FRESH_SECS)
        };
        let may_try = cache.tried_at.is_none_or(|at| now - at >= REFETCH_SECS);
        let unknown_kid = cache.keys.as_ref().is_some_and(|(_, keys)| {
            matches!(
                verify_assertion::<serde_json::Value>(assertion, keys),
                Err(auth_types::jws::JwsError::UnknownKid(_))
            )
        });
        if may_try && (!fresh(&cache) || unknown_kid) {
            cache.tried_at = Some(now);
            match fetch(http, uri).await {
                Ok(keys) => cache.keys = Some((now, keys)),
                Err(e) => {
                    tracing::warn!(cluster = %cluster.name, error = %e, "cluster keys not fetched");
                }
            }
        }
        match &cache.keys {
            // While the cluster cannot be reached, the keys fetched last
            // verify for a while; a key it rotated out does not live on.
            Some((at, keys)) if now - at <= MAX_STALE_SECS => {
                verify_assertion(assertion, keys).map_err(bad_signature)
            }
            _ => Err(Error::new(
                Kind::Unavailable,
                "temporarily_unavailable",
                "the cluster's keys cannot be fetched now: try again",
            )),
        }
    }
}

/// https, or http on loopback only (keys over plain http could be swapped).
fn secure_url(uri: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(uri) else {
        return false;
    };
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}

/// The cluster's key set, read up to [`MAX_JWKS_BYTES`].
async fn fetch(http: &reqwest::Client, uri: &str) -> anyhow::Result<VerifyingKeySet> {
    let mut r = http.get(uri).send().await?.error_for_status()?;
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await? {
        body.extend_from_slice(&chunk);
        anyhow::ensure!(
            body.len() <= MAX_JWKS_BYTES,
            "a key set over {MAX_JWKS_BYTES} bytes"
        );
    }
    let set: JwkSet = serde_json::from_slice(&body)?;
    Ok(VerifyingKeySet::from_jwks(&set).0)
}
