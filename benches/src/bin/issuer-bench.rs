//! Issuer-side benchmarks and fixtures:
//! - `mint`: access tokens signed with the issuer's current key (fixtures
//!   for the sidecar load runs; minting by login would cost an argon2 hash each);
//! - `seed-revocations`: live revocation records in bulk;
//! - `login-storm`: logins/s at the argon2 limit, with refresh and JWKS
//!   requests running beside it at a fixed rate;
//! - `refresh`: refresh-token rotation throughput;
//! - `revocation-lag`: logout on the issuer → denied at a sidecar;
//! - `admin-change-lag`: an admin's membership change or role grant,
//!   answered → the sidecar's decision for a live token changes;
//! - `rate-limit-cost`: one limiter decision, from memory and through Redis;
//! - `user-search`: admin user search at a million users on PostgreSQL,
//!   with its trigram index and with the planner kept off it (a scan);
//! - `github-sign-in`: the GitHub callback's latency against the fake
//!   GitHub, interleaved with password logins (the baseline) on one issuer.
//!
//! Each prints one JSON line.
#![forbid(unsafe_code)]

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_types::{AccessClaims, Audience, RevocationKind};
use clap::{Parser, Subcommand};
use dm_benches::new_histogram;
use envoy_types::ext_authz::v3::pb::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use hdrhistogram::Histogram;
use issuer::store::{NewRevocation, Store};
use serde_json::{json, Value};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Mint {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        kek_file: std::path::PathBuf,
        #[arg(long)]
        issuer_url: String,
        #[arg(long, default_value = "devmentor")]
        audience: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    SeedRevocations {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    LoginStorm {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Refresh and JWKS requests per second each, beside the storm.
        #[arg(long, default_value_t = 50)]
        side_rate: u64,
        /// Logins per second (open loop); without it, `concurrency` workers
        /// log in back to back (the maximum rate).
        #[arg(long)]
        rate: Option<u64>,
    },
    Refresh {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value = "refresh")]
        label: String,
    },
    RevocationLag {
        /// Where users log in and out.
        #[arg(long)]
        issuer_url: String,
        /// The sidecar's admin address: its own lag histogram (from the
        /// record's creation in the commit transaction to the sidecar
        /// applying it) is read before and after and reported too.
        #[arg(long)]
        sidecar_admin: Option<String>,
        /// The sidecar's gRPC address (asked directly)…
        #[arg(long, required_unless_present = "envoy", conflicts_with = "envoy")]
        sidecar: Option<String>,
        /// …or a URL through an Envoy that decides (the module): 200 is
        /// allowed, anything else refused.
        #[arg(long)]
        envoy: Option<String>,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
        #[arg(long, default_value = "revocation-lag")]
        label: String,
    },
    RateLimitCost {
        /// Redis for the shared decisions (without it, only memory is timed).
        #[arg(long)]
        redis_url: Option<String>,
        #[arg(long, default_value_t = 20_000)]
        count: usize,
    },
    AdminChangeLag {
        /// Changes of each kind.
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
    UserSearch {
        /// A PostgreSQL server URL; a fresh database is made on it.
        #[arg(long)]
        postgres_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        users: i64,
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
    GithubSignIn {
        /// Sign-ins of each kind, one at a time, alternating.
        #[arg(long, default_value_t = 200)]
        count: usize,
    },
}

const PASSWORD: &str = "correct horse battery staple";

fn now_secs() -> i64 {
    sidecar::authz::now_ms() / 1000
}

fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

async fn register_and_login(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let r = http
        .post(format!("{url}/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "register: {}", r.status());
    login(http, url, &email).await
}

async fn login(http: &reqwest::Client, url: &str, email: &str) -> anyhow::Result<Value> {
    let r = http
        .post(format!("{url}/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "login: {}", r.status());
    let mut v: Value = r.json().await?;
    v["email"] = json!(email);
    Ok(v)
}

async fn mint(
    database_url: &str,
    kek_file: &std::path::Path,
    issuer_url: &str,
    audience: &str,
    count: usize,
    ttl: i64,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let store = Store::connect(database_url, 2).await?;
    let kek = issuer::domain::keys::Kek::load_or_create(kek_file, false)?;
    let keyring = issuer::service::keyring::Keyring::open(
        &store,
        kek,
        auth_types::SigningAlg::ES256,
        now_secs(),
    )
    .await?;
    let signing = keyring.snapshot().signing.clone();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let now = now_secs();
    for _ in 0..count {
        let claims = AccessClaims {
            iss: issuer_url.into(),
            sub: uuid::Uuid::new_v4().to_string(),
            aud: Audience::One(audience.into()),
            exp: now + ttl,
            iat: now,
            nbf: Some(now),
            jti: uuid::Uuid::new_v4().to_string(),
            sid: uuid::Uuid::new_v4().to_string(),
            client_id: "devmentor-auth".into(),
            roles: vec!["dev".into()],
            permissions: vec![],
            amr: vec!["pwd".into()],
            email: None,
            user_gen: 0,
            teams: Default::default(),
            teams_overflow: false,
            email_verified: false,
            acr: None,
            auth_time: None,
            scope: None,
            act: None,
            cnf: None,
        };
        writeln!(
            file,
            "{}",
            issuer::domain::tokens::mint_access_token(&signing, &claims)?
        )?;
    }
    file.flush()?;
    println!("{}", json!({"minted": count, "kid": signing.kid}));
    Ok(())
}

async fn seed_revocations(database_url: &str, count: usize, ttl: i64) -> anyhow::Result<()> {
    let store = Store::connect(database_url, 2).await?;
    let subjects: Vec<String> = (0..count)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let now = now_secs();
    let started = Instant::now();
    for chunk in subjects.chunks(10_000) {
        let batch: Vec<NewRevocation<'_>> = chunk
            .iter()
            .map(|s| NewRevocation {
                kind: RevocationKind::Token,
                subject: s,
                issued_before: 0,
                created_at_ms: now * 1000,
                expires_at: now + ttl,
            })
            .collect();
        store.record_revocations(&batch).await?;
    }
    println!(
        "{}",
        json!({"seeded": count, "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}

/// Fixed-rate requests until `stop`, latency from the due time.
async fn side_load<F, Fut>(rate: u64, stop: Arc<AtomicBool>, mut call: F) -> Histogram<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut hist = new_histogram();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if call().await {
            let _ = hist.record(due.elapsed().as_micros().max(1) as u64);
        }
        due += interval;
    }
    hist
}

async fn login_storm(
    url: &str,
    concurrency: usize,
    seconds: u64,
    side_rate: u64,
    rate: Option<u64>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut users = Vec::new();
    for _ in 0..concurrency {
        users.push(register_and_login(&http, url).await?);
    }
    let side_user = register_and_login(&http, url).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(Mutex::new(new_histogram()));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let refresh_task = {
        let (http, url, stop) = (http.clone(), url.to_string(), stop.clone());
        let token = Arc::new(Mutex::new(
            side_user["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ));
        tokio::spawn(async move {
            side_load(side_rate, stop, || {
                let (http, url, token) = (http.clone(), url.clone(), token.clone());
                async move {
                    let current = token.lock().await.clone();
                    let Ok(r) = http
                        .post(format!("{url}/auth/refresh"))
                        .json(&json!({"refresh_token": current}))
                        .send()
                        .await
                    else {
                        return false;
                    };
                    let Ok(v) = r.json::<Value>().await else {
                        return false;
                    };
                    match v["refresh_token"].as_str() {
                        Some(next) => {
                            *token.lock().await = next.to_string();
                            true
                        }
                        None => false,
                    }
                }
            })
            .await
        })
    };
    let jwks_task = {
        let (http, url, stop) = (http.clone(), url.to_string(), stop.clone());
        tokio::spawn(async move {
            side_load(side_rate, stop, || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    match http
                        .get(format!("{url}/.well-known/jwks.json"))
                        .send()
                        .await
                    {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    }
                }
            })
            .await
        })
    };
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let emails: Vec<String> = users
        .iter()
        .map(|u| u["email"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut workers = Vec::new();
    match rate {
        // Open loop: a login is due every 1/rate s whatever the answers do;
        // latency counts from the due time.
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let mut due = started;
            let mut i = 0;
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                let (http, url, logins, failures) = (
                    http.clone(),
                    url.to_string(),
                    logins.clone(),
                    failures.clone(),
                );
                let email = emails[i % emails.len()].clone();
                i += 1;
                workers.push(tokio::spawn(async move {
                    match login(&http, &url, &email).await {
                        Ok(_) => {
                            let _ = logins
                                .lock()
                                .await
                                .record(due.elapsed().as_micros().max(1) as u64);
                        }
                        Err(_) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
                due += interval;
            }
        }
        None => {
            for email in emails {
                let (http, url, logins, failures) = (
                    http.clone(),
                    url.to_string(),
                    logins.clone(),
                    failures.clone(),
                );
                workers.push(tokio::spawn(async move {
                    let mut local = new_histogram();
                    while Instant::now() < end {
                        let t = Instant::now();
                        match login(&http, &url, &email).await {
                            Ok(_) => {
                                let _ = local.record(t.elapsed().as_micros().max(1) as u64);
                            }
                            Err(_) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    logins.lock().await.add(&local).ok();
                }));
            }
        }
    }
    for w in workers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let refresh = refresh_task.await?;
    let jwks = jwks_task.await?;
    let logins = logins.lock().await;
    println!(
        "{}",
        json!({
            "bench": "login-storm",
            "concurrency": concurrency,
            "target_rate": rate,
            "logins_per_second": logins.len() as f64 / elapsed,
            "login": percentiles(&logins),
            "login_failures": failures.load(Ordering::Relaxed),
            "side_rate": side_rate,
            "refresh_during_storm": percentiles(&refresh),
            "jwks_during_storm": percentiles(&jwks),
        })
    );
    Ok(())
}

async fn refresh_bench(
    url: &str,
    concurrency: usize,
    seconds: u64,
    label: &str,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let hist = Arc::new(Mutex::new(new_histogram()));
    let mut sessions = Vec::new();
    let first = register_and_login(&http, url).await?;
    let email = first["email"].as_str().unwrap_or_default().to_string();
    sessions.push(first);
    for _ in 1..concurrency {
        sessions.push(login(&http, url, &email).await?);
    }
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for session in sessions {
        let (http, url, hist) = (http.clone(), url.to_string(), hist.clone());
        let mut token = session["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        workers.push(tokio::spawn(async move {
            let mut local = new_histogram();
            while Instant::now() < end {
                let t = Instant::now();
                let Ok(r) = http
                    .post(format!("{url}/auth/refresh"))
                    .json(&json!({"refresh_token": token}))
                    .send()
                    .await
                else {
                    break;
                };
                let Ok(v) = r.json::<Value>().await else {
                    break;
                };
                let Some(next) = v["refresh_token"].as_str() else {
                    break;
                };
                token = next.to_string();
                let _ = local.record(t.elapsed().as_micros().max(1) as u64);
            }
            hist.lock().await.add(&local).ok();
        }));
    }
    for w in workers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let hist = hist.lock().await;
    println!(
        "{}",
        json!({"bench": label, "concurrency": concurrency, "refreshes_per_second": hist.len() as f64 / elapsed, "latency": percentiles(&hist)})
    );
    Ok(())
}

/// Who decides: the sidecar asked over gRPC, or an Envoy asked over HTTP.
#[derive(Clone)]
enum Judge {
    Grpc(AuthorizationClient<tonic::transport::Channel>),
    Envoy(reqwest::Client, String),
}

async fn allowed(judge: &mut Judge, token: &str) -> anyhow::Result<bool> {
    match judge {
        Judge::Grpc(client) => {
            let r = client
                .check(sidecar::grpc::http_check_request(
                    "GET",
                    "mesh.local",
                    "/ai/chat",
                    Some(token),
                ))
                .await?
                .into_inner();
            Ok(matches!(r.http_response, Some(HttpResponse::OkResponse(_))))
        }
        Judge::Envoy(http, url) => Ok(http
            .get(url.as_str())
            .bearer_auth(token)
            .send()
            .await?
            .status()
            == 200),
    }
}

/// Cumulative bucket counts of the sidecar's `revocation_lag_seconds`.
async fn lag_buckets(http: &reqwest::Client, admin: &str) -> anyhow::Result<Vec<(f64, u64)>> {
    let text = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut buckets = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("sidecar_revocation_lag_seconds_bucket{le=\"") else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        buckets.push((le, count.trim().parse()?));
    }
    Ok(buckets)
}

/// Upper bucket bounds (ms) under which 50 % and 99 % of the new
/// observations fall, and how many there were.
fn bucket_quantiles(before: &[(f64, u64)], after: &[(f64, u64)]) -> serde_json::Value {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before.iter().find(|(l, _)| l == le).map_or(0, |(_, c)| *c);
            (*le, n.saturating_sub(was))
        })
        .collect();
    let total = delta.last().map_or(0, |(_, n)| *n);
    let le_ms = |q: f64| {
        delta
            .iter()
            .find(|(_, n)| (*n as f64) >= q * total as f64)
            .map(|(le, _)| {
                if le.is_finite() {
                    json!(le * 1000.0)
                } else {
                    json!("+Inf")
                }
            })
    };
    json!({"count": total, "p50_le_ms": le_ms(0.5), "p99_le_ms": le_ms(0.99)})
}

async fn revocation_lag(
    issuer_url: &str,
    judge: Judge,
    sidecar_admin: Option<&str>,
    count: usize,
    concurrency: usize,
    label: &str,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let before = match sidecar_admin {
        Some(admin) => Some(lag_buckets(&http, admin).await?),
        None => None,
    };
    let user = register_and_login(&http, issuer_url).await?;
    let email = user["email"].as_str().unwrap_or_default().to_string();
    let hist = Arc::new(Mutex::new(new_histogram()));
    let per_worker = count.div_ceil(concurrency);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, url, email, hist, mut client) = (
            http.clone(),
            issuer_url.to_string(),
            email.clone(),
            hist.clone(),
            judge.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut local = new_histogram();
            for _ in 0..per_worker {
                let session = login(&http, &url, &email).await?;
                let token = session["access_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                anyhow::ensure!(
                    allowed(&mut client, &token).await?,
                    "fresh token not allowed"
                );
                let r = http
                    .post(format!("{url}/auth/logout"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 204, "logout: {}", r.status());
                // The revocation is committed when the logout answers.
                let committed = Instant::now();
                let deadline = committed + Duration::from_secs(10);
                loop {
                    if !allowed(&mut client, &token).await? {
                        let _ = local.record(committed.elapsed().as_micros().max(1) as u64);
                        break;
                    }
                    anyhow::ensure!(Instant::now() < deadline, "not revoked within 10 s");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            hist.lock().await.add(&local).ok();
            Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let hist = hist.lock().await;
    let at_sidecar = match (sidecar_admin, before) {
        (Some(admin), Some(before)) => bucket_quantiles(&before, &lag_buckets(&http, admin).await?),
        _ => serde_json::Value::Null,
    };
    println!(
        "{}",
        json!({"bench": label, "revocations": hist.len(), "lag": percentiles(&hist), "sidecar_lag": at_sidecar})
    );
    Ok(())
}

/// Times single limiter decisions as the issuer makes them (one per request
/// on `/auth/*`): from memory, and through Redis's script, over many client
/// keys so both the allowed and the refused paths are exercised.
async fn rate_limit_cost(redis_url: Option<&str>, count: usize) -> anyhow::Result<()> {
    use issuer::domain::ratelimit::{Limiter, Rate};
    let rate = Rate {
        limit: 100,
        period_ms: 900_000,
    };
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    let time = |limiter: Limiter, local_wanted: bool| {
        let prefix = prefix.clone();
        async move {
            let mut h = new_histogram();
            let mut refused = 0usize;
            for i in 0..count {
                // 200 requests per client against a budget of 100: half refused.
                let key = format!("bench:{prefix}:{}", i % 100);
                let t = Instant::now();
                let v = limiter.check(&key, rate, sidecar::authz::now_ms()).await;
                h.record(t.elapsed().as_nanos().max(1) as u64)?;
                anyhow::ensure!(v.local == local_wanted, "decided by the wrong store");
                refused += usize::from(!v.allowed);
            }
            Ok::<_, anyhow::Error>((h, refused))
        }
    };
    let ns = |h: &Histogram<u64>| json!({"p50_ns": h.value_at_quantile(0.5), "p99_ns": h.value_at_quantile(0.99), "count": h.len()});
    let (memory, refused_memory) = time(Limiter::new(None)?, true).await?;
    let redis = match redis_url {
        Some(url) => {
            let (h, refused) = time(Limiter::new(Some(url))?, false).await?;
            json!({"latency": ns(&h), "refused": refused})
        }
        None => serde_json::Value::Null,
    };
    println!(
        "{}",
        json!({
            "bench": "rate-limit-cost",
            "memory": {"latency": ns(&memory), "refused": refused_memory},
            "redis": redis,
        })
    );
    Ok(())
}

/// An issuer (SQLite) and a sidecar in this process, the sidecar following
/// the issuer's feed as in production. Times, from the admin API's answer,
/// until the sidecar decides differently for a token: (a) a membership
/// change (the token is refused: user-generation revocation), (b) a grant
/// added to or withdrawn from a role (the same token flips between allowed
/// and refused: the permission map, no new token).
async fn admin_change_lag(count: usize) -> anyhow::Result<()> {
    use issuer::testing::{TEST_AUDIENCE, TEST_ISSUER_URL};
    use sidecar::decision::{Decision, RequestAttrs};
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}/issuer.db", dir.path().display());
    let mut args = issuer::testing::test_args(&db, dir.path());
    args.feed_poll_ms = issuer::config::ServeArgs::with_database(&db).feed_poll_ms;
    let server = issuer::testing::start(
        args,
        std::sync::Arc::new(issuer::domain::clock::SystemClock),
    )
    .await?;
    let base = server.base_url.clone();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - {pattern: '/t/{team}/**', team: '{team}'}\n  - {prefix: /p/, permissions: [bench.manage]}\n  - {prefix: /a/, allow: authenticated}\n",
    )?;
    let mut settings = sidecar::config::Settings::for_tests(&base, policy);
    settings.expected_issuer = Some(TEST_ISSUER_URL.into());
    settings.audience = TEST_AUDIENCE.into();
    let sidecar = sidecar::start(settings).await?;
    let authz = sidecar.authz.clone();
    let ready_by = Instant::now() + Duration::from_secs(10);
    while !authz.is_ready(sidecar::authz::now_ms()) {
        anyhow::ensure!(Instant::now() < ready_by, "sidecar not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let http = reqwest::Client::new();
    let store = &server.state.store;
    let admin_user = register_and_login(&http, &base).await?;
    let admin_email = admin_user["email"].as_str().unwrap_or_default().to_string();
    let find = |email: String| async move {
        store
            .user_by_email(&email)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no user {email}"))
    };
    let admin_id = find(admin_email.clone()).await?.id;
    store.set_roles(&admin_id, &["admin".into()]).await?;
    let admin = login(&http, &base, &admin_email).await?["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let member = register_and_login(&http, &base).await?;
    let member_email = member["email"].as_str().unwrap_or_default().to_string();
    let member_id = find(member_email.clone()).await?.id;
    store.set_roles(&member_id, &["bench-role".into()]).await?;
    let r = http
        .post(format!("{base}/admin/teams"))
        .bearer_auth(&admin)
        .json(&json!({"slug": "t", "name": "T", "owner": admin_id}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "team: {}", r.status());
    // Owning the team changed what the admin's token says: a fresh one.
    let admin = login(&http, &base, &admin_email).await?["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let decides = |path: &'static str, token: String| {
        let authz = authz.clone();
        async move {
            let request = RequestAttrs {
                method: "GET",
                host: "mesh.local",
                path,
            };
            matches!(
                authz
                    .check(
                        request,
                        sidecar::authz::Credential {
                            token: Some(&token),
                            ..Default::default()
                        },
                        sidecar::authz::now_ms()
                    )
                    .await,
                Decision::Allow { .. }
            )
        }
    };
    // Polls until the decision is `want`; the time since `from`.
    let until = |path: &'static str, token: String, want: bool, from: Instant| {
        let decides = &decides;
        async move {
            let deadline = from + Duration::from_secs(10);
            loop {
                if decides(path, token.clone()).await == want {
                    return Ok::<_, anyhow::Error>(from.elapsed().as_micros().max(1) as u64);
                }
                anyhow::ensure!(Instant::now() < deadline, "no change within 10 s");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    };
    let (mut membership, mut grant) = (new_histogram(), new_histogram());
    for _ in 0..count {
        // (a) Membership: added (an addition cuts nothing), then removed,
        // which cuts the member's tokens: measured.
        let url = format!("{base}/auth/teams/t/members/{member_id}");
        let r = http
            .put(&url)
            .bearer_auth(&admin)
            .json(&json!({"role": "member"}))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "add: {}", r.status());
        let token = login(&http, &base, &member_email).await?["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        anyhow::ensure!(decides("/a/x", token.clone()).await, "fresh token allowed");
        anyhow::ensure!(decides("/t/t/x", token.clone()).await, "member allowed");
        let r = http.delete(&url).bearer_auth(&admin).send().await?;
        anyhow::ensure!(r.status() == 204, "remove: {}", r.status());
        let answered = Instant::now();
        // The token's claims are stale now: refused everywhere.
        membership.record(until("/a/x", token.clone(), false, answered).await?)?;

        // (b) Grants: the same token, flipped by the role's permissions.
        let token = login(&http, &base, &member_email).await?["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for give in [true, false] {
            let permissions = if give {
                json!(["bench.manage"])
            } else {
                json!([])
            };
            let r = http
                .put(format!("{base}/admin/roles/bench-role"))
                .bearer_auth(&admin)
                .json(&json!({ "permissions": permissions }))
                .send()
                .await?;
            anyhow::ensure!(r.status() == 200, "grant: {}", r.status());
            let answered = Instant::now();
            grant.record(until("/p/x", token.clone(), give, answered).await?)?;
        }
    }
    println!(
        "{}",
        json!({
            "bench": "admin-change-lag",
            "membership_change": percentiles(&membership),
            "role_grant_change": percentiles(&grant),
        })
    );
    server.stop().await;
    Ok(())
}

/// Seeds `users` accounts with generate_series (names carry random hex, so
/// a 6-character substring of one names about one user), then times the
/// store's search for substrings of real names: with the trigram index, and
/// the same SQL with index scans disabled for the baseline, alternating.
async fn user_search(postgres_url: &str, users: i64, queries: usize) -> anyhow::Result<()> {
    let url = issuer::testing::fresh_postgres_database(postgres_url).await?;
    let store = Store::connect(&url, 4).await?;
    store.migrate().await?;
    let pool = sqlx::PgPool::connect(&url).await?;
    let seeding = Instant::now();
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, roles, created_at, \
         password_changed_at, search_text) \
         SELECT 'u' || g, 'user' || g || '@example.com', 'User ' || substr(md5(g::text), 1, 12), \
                '', '', 0, 0, lower('user' || g || '@example.com User ' || substr(md5(g::text), 1, 12)) \
         FROM generate_series(1, $1) g",
    )
    .bind(users)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE users").execute(&pool).await?;
    let seeded_s = seeding.elapsed().as_secs_f64();
    let (mut indexed, mut scan) = (new_histogram(), new_histogram());
    let mut hits = 0usize;
    for i in 0..queries {
        // A substring of some user's name, found with md5 like the seed.
        let g = 1 + (i as i64 * 7919) % users;
        let row: (String,) = sqlx::query_as("SELECT substr(md5($1::text), 3, 6)")
            .bind(g.to_string())
            .fetch_one(&pool)
            .await?;
        let q = row.0;
        let t = Instant::now();
        hits += store.search_users(Some(&q), None, 50).await?.len();
        indexed.record(t.elapsed().as_micros() as u64)?;
        let t = Instant::now();
        let mut tx = pool.begin().await?;
        sqlx::query("SET LOCAL enable_bitmapscan = off")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL enable_indexscan = off")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT id FROM users WHERE email > '' AND search_text LIKE $1 ORDER BY email LIMIT 50",
        )
        .bind(format!("%{q}%"))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        anyhow::ensure!(!rows.is_empty(), "the scan found nothing for {q}");
        scan.record(t.elapsed().as_micros() as u64)?;
    }
    println!(
        "{}",
        json!({
            "bench": "user-search",
            "users": users,
            "seed_seconds": seeded_s,
            "mean_hits": hits as f64 / queries as f64,
            "indexed": percentiles(&indexed),
            "scan": percentiles(&scan),
            "scan_to_indexed_p50": scan.value_at_quantile(0.5) as f64
                / indexed.value_at_quantile(0.5).max(1) as f64,
        })
    );
    Ok(())
}

/// An issuer (SQLite, production argon2 settings) and the fake GitHub in
/// this process; GitHub callbacks and password logins alternate, so both
/// see the same machine state. Reports each one's latency and the whole
/// GitHub dance (login → fake authorize → callback).
async fn github_sign_in(count: usize) -> anyhow::Result<()> {
    use fake_github::browser::Browser;
    let dir = tempfile::tempdir()?;
    let fake = fake_github::FakeGitHub::start(fake_github::Config {
        client_id: "bench".into(),
        client_secret: "bench-secret".into(),
        redirect_uri: format!("{}/auth/github/callback", issuer::testing::TEST_ISSUER_URL),
        users: Vec::new(),
    })
    .await?;
    let db = format!("sqlite://{}/issuer.db", dir.path().display());
    let mut args = issuer::testing::test_args(&db, dir.path());
    // Production hashing cost: the baseline is a real password login.
    let defaults = issuer::config::ServeArgs::with_database(&db);
    args.argon2_memory_kib = defaults.argon2_memory_kib;
    args.argon2_iterations = defaults.argon2_iterations;
    args.github.github_client_id = Some("bench".into());
    args.github.github_client_secret = Some(issuer::config::Secret("bench-secret".into()));
    args.github.github_web_url = fake.url();
    args.github.github_api_url = fake.url();
    let server = issuer::testing::start(
        args,
        std::sync::Arc::new(issuer::domain::clock::SystemClock),
    )
    .await?;
    let http = reqwest::Client::new();
    let base = server.base_url.clone();
    let password_user = register_and_login(&http, &base).await?;
    let email = password_user["email"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (mut callback, mut dance, mut password) =
        (new_histogram(), new_histogram(), new_histogram());
    for i in 0..count {
        // Half the GitHub sign-ins are first sign-ins (an account is made).
        let login = if i % 2 == 0 {
            "returning".to_string()
        } else {
            format!("new-{i}")
        };
        fake.add_user(fake_github::FakeUser::new(
            if i % 2 == 0 { 1 } else { 10 + i as u64 },
            &login,
            &format!("{login}@bench.example"),
        ));
        fake.sign_in_as(&login);
        let mut b = Browser::new();
        b.alias(issuer::testing::TEST_ISSUER_URL, &base);
        b.accept_json = true;
        let started = Instant::now();
        let start = b
            .get(&format!(
                "{}/auth/github/login",
                issuer::testing::TEST_ISSUER_URL
            ))
            .await;
        let url = start.json()["authorize_url"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let back = b.get(&url).await.location.unwrap_or_default();
        let at_callback = Instant::now();
        let done = b.get(&back).await;
        anyhow::ensure!(
            done.status == 200,
            "callback: {} {}",
            done.status,
            done.body
        );
        callback.record(at_callback.elapsed().as_micros() as u64)?;
        dance.record(started.elapsed().as_micros() as u64)?;

        let t = Instant::now();
        login_once(&http, &base, &email).await?;
        password.record(t.elapsed().as_micros() as u64)?;
    }
    println!(
        "{}",
        json!({
            "bench": "github-sign-in",
            "github_callback": percentiles(&callback),
            "github_whole_dance": percentiles(&dance),
            "password_login": percentiles(&password),
            "callback_to_password_p50": callback.value_at_quantile(0.5) as f64
                / password.value_at_quantile(0.5).max(1) as f64,
        })
    );
    server.stop().await;
    Ok(())
}

async fn login_once(http: &reqwest::Client, url: &str, email: &str) -> anyhow::Result<()> {
    login(http, url, email).await.map(|_| ())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Mint {
            database_url,
            kek_file,
            issuer_url,
            audience,
            count,
            ttl,
            out,
        } => {
            mint(
                &database_url,
                &kek_file,
                &issuer_url,
                &audience,
                count,
                ttl,
                &out,
            )
            .await
        }
        Command::SeedRevocations {
            database_url,
            count,
            ttl,
        } => seed_revocations(&database_url, count, ttl).await,
        Command::LoginStorm {
            url,
            concurrency,
            seconds,
            side_rate,
            rate,
        } => login_storm(&url, concurrency, seconds, side_rate, rate).await,
        Command::Refresh {
            url,
            concurrency,
            seconds,
            label,
        } => refresh_bench(&url, concurrency, seconds, &label).await,
        Command::GithubSignIn { count } => github_sign_in(count).await,
        Command::AdminChangeLag { count } => admin_change_lag(count).await,
        Command::RateLimitCost { redis_url, count } => {
            rate_limit_cost(redis_url.as_deref(), count).await
        }
        Command::UserSearch {
            postgres_url,
            users,
            queries,
        } => user_search(&postgres_url, users, queries).await,
        Command::RevocationLag {
            issuer_url,
            sidecar,
            envoy,
            sidecar_admin,
            count,
            concurrency,
            label,
        } => {
            let judge = match (sidecar, envoy) {
                (Some(sidecar), _) => {
                    Judge::Grpc(AuthorizationClient::connect(format!("http://{sidecar}")).await?)
                }
                (None, Some(url)) => Judge::Envoy(reqwest::Client::new(), url),
                (None, None) => anyhow::bail!("--sidecar or --envoy"),
            };
            revocation_lag(
                &issuer_url,
                judge,
                sidecar_admin.as_deref(),
                count,
                concurrency,
                &label,
            )
            .await
        }
    }
}
