//! A fake Kubernetes cluster, as far as workload identity sees one: the
//! service-account issuer of its API server, which signs the projected
//! tokens pods read from their volume and publishes its keys at
//! `/openid/v1/jwks` (and discovery at `/.well-known/openid-configuration`),
//! with the claims a real cluster puts in them (`sub`
//! `system:serviceaccount:<namespace>:<name>`, `aud`, `exp`, `iat`, `nbf`,
//! `jti`, and `kubernetes.io` naming the namespace, service account and
//! pod). Signed with ES256 (a cluster may use RS256 or ES256).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

pub struct FakeCluster {
    pub addr: SocketAddr,
    /// The cluster's service-account issuer (`--service-account-issuer`).
    pub issuer: String,
    key: Arc<EcdsaKeyPair>,
    kid: String,
    rng: SystemRandom,
    fetches: Arc<AtomicU64>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    let _ = SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A pod's identity in a token: its namespace, service account and name.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub pod: &'a str,
}

impl FakeCluster {
    /// Serves the keys on loopback; the issuer is the served URL.
    pub async fn start() -> anyhow::Result<FakeCluster> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("key generation"))?;
        let key = Arc::new(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .map_err(|_| anyhow::anyhow!("key"))?,
        );
        let kid = random_hex(16);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}");
        let jwks = jwks(&key, &kid);
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        let fetches = Arc::new(AtomicU64::new(0));
        let counted = fetches.clone();
        let router = Router::new()
            .route(
                "/openid/v1/jwks",
                get(move || async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Json(jwks)
                }),
            )
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(discovery) }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(FakeCluster {
            addr,
            issuer,
            key,
            kid,
            rng,
            fetches,
        })
    }

    /// How many times its keys were fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/openid/v1/jwks", self.issuer)
    }

    /// The public keys, as `/openid/v1/jwks` serves them.
    pub fn jwks(&self) -> Value {
        jwks(&self.key, &self.kid)
    }

    /// The claims of a projected token for `who`, for `audience`, made at
    /// `iat` (Unix seconds) and good for `ttl` seconds, as kubelet asks for
    /// one (`expirationSeconds`).
    pub fn claims(&self, who: Workload<'_>, audience: &str, iat: i64, ttl: i64) -> Value {
        json!({
            "aud": [audience],
            "exp": iat + ttl,
            "iat": iat,
            "nbf": iat,
            "iss": self.issuer,
            "jti": format!("{}-{}-{}-{}-{}", random_hex(4), random_hex(2), random_hex(2), random_hex(2), random_hex(6)),
            "kubernetes.io": {
                "namespace": who.namespace,
                "node": {"name": "node-1", "uid": random_hex(16)},
                "pod": {"name": who.pod, "uid": random_hex(16)},
                "serviceaccount": {"name": who.service_account, "uid": random_hex(16)},
            },
            "sub": format!("system:serviceaccount:{}:{}", who.namespace, who.service_account),
        })
    }

    /// A projected token for `who`, made now.
    pub fn token(&self, who: Workload<'_>, audience: &str, ttl: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        self.sign(&self.claims(who, audience, now, ttl))
    }

    /// Signs any claims with the cluster's key (tests alter them).
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map(|s| b64(s.as_ref()))
            .unwrap_or_default();
        format!("{input}.{signature}")
    }
}

fn jwks(key: &EcdsaKeyPair, kid: &str) -> Value {
    // An uncompressed P-256 point: 0x04, then x and y, 32 bytes each.
    let point = key.public_key().as_ref();
    let (x, y) = point.get(1..).unwrap_or_default().split_at(32);
    json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                     "x": b64(x), "y": b64(y)}]})
}
