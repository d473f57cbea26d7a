//! The token endpoint under load, beside password login and the issuer's
//! own refresh, on one in-process issuer with production hashing: an
//! authorization code exchanged (PKCE, client_secret_basic, an RS256 ID
//! token), a refresh token grant (rotation), `/auth/login` and
//! `/auth/refresh`, and the machine grants: `client_credentials` (a service
//! as itself), token exchange (RFC 8693: a service for a user) and a
//! personal access token's exchange (a script, no client), each
//! closed-loop with the same concurrency for the same time, one after the
//! other. Prints one JSON line per operation.
//!
//! usage: oauth-bench [--database-url URL] [--concurrency N] [--seconds S]
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dm_benches::new_histogram;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// RFC 7636 Appendix B: one pair serves every code (each code is bound to
/// its challenge; reusing the pair costs the bench nothing it measures).
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1/cb";
const PASSWORD: &str = "correct horse battery staple";

#[derive(Parser)]
struct Cli {
    /// SQLite in a temporary directory unless given (e.g. PostgreSQL).
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

struct Bench {
    http: reqwest::Client,
    base: String,
    secret: String,
    cookies: String,
}

impl Bench {
    /// A code for the signed-in browser, from the authorization endpoint.
    async fn code(&self) -> anyhow::Result<String> {
        let url = format!(
            "{}/auth/ui/authorize?response_type=code&client_id=bench&redirect_uri={}\
             &scope=openid&state=s&code_challenge={CHALLENGE}&code_challenge_method=S256",
            self.base, "http%3A%2F%2F127.0.0.1%3A9%2Fcb"
        );
        let r = self
            .http
            .get(url)
            .header("cookie", &self.cookies)
            .header("sec-fetch-site", "same-origin")
            .send()
            .await?;
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let code = location
            .split("code=")
            .nth(1)
            .and_then(|r| r.split('&').next())
            .unwrap_or_default();
        anyhow::ensure!(!code.is_empty(), "authorize: {} {location}", r.status());
        Ok(code.to_string())
    }

    async fn token(&self, form: &[(&str, &str)]) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}/auth/oauth2/token", self.base))
            .basic_auth("bench", Some(&self.secret))
            .form(form)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "token endpoint: {}", r.status());
        Ok(r.json().await?)
    }

    async fn exchange(&self, code: &str) -> anyhow::Result<Value> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("code_verifier", VERIFIER),
        ])
        .await
    }
}

fn refresh_of(v: &Value) -> String {
    v["refresh_token"].as_str().unwrap_or_default().to_string()
}

/// `op` in `concurrency` closed loops for `seconds`; each loop carries its
/// own state (a refresh token chain). `op` answers the next state and
/// whether the issuer served the request: refusals (the password hasher's
/// queue answers 429 when full) are counted, not timed.
async fn closed_loop<S, F, Fut>(
    database: &str,
    name: &str,
    concurrency: usize,
    seconds: u64,
    states: Vec<S>,
    op: F,
) -> anyhow::Result<()>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<(S, bool)>> + Send,
{
    let all = Arc::new(Mutex::new(new_histogram()));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for state in states.into_iter().take(concurrency) {
        let (all, op, refused) = (all.clone(), op.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut local: Histogram<u64> = new_histogram();
            let mut state = state;
            while Instant::now() < until {
                let t = Instant::now();
                let (next, served) = op(state).await?;
                state = next;
                if served {
                    local.record(t.elapsed().as_micros() as u64)?;
                } else {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            all.lock().await.add(&local)?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let h = all.lock().await;
    println!(
        "{}",
        json!({
            "bench": "oauth-token-endpoint",
            "operation": name,
            "database": database,
            "concurrency": concurrency,
            "per_second": h.len() as f64 / elapsed,
            "p50_us": h.value_at_quantile(0.5),
            "p99_us": h.value_at_quantile(0.99),
            "count": h.len(),
            "refused": refused.load(std::sync::atomic::Ordering::Relaxed),
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = tempfile::tempdir()?;
    let db = cli
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/issuer.db", dir.path().display()));
    let mut args = issuer::testing::test_args(&db, dir.path());
    // Production hashing: the baseline is a real password login.
    let defaults = issuer::config::ServeArgs::with_database(&db);
    args.argon2_memory_kib = defaults.argon2_memory_kib;
    args.argon2_iterations = defaults.argon2_iterations;
    let server = issuer::testing::start(args, Arc::new(issuer::domain::clock::SystemClock)).await?;
    let state = server.state.clone();
    let (client, secret) = issuer::service::oauth::clients::check(
        &issuer::service::oauth::clients::NewClient {
            client_id: "bench".into(),
            name: "Bench".into(),
            kind: "confidential".into(),
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            scopes: vec!["openid".into()],
            first_party: true,
            ..Default::default()
        },
        0,
    )
    .map_err(|e| anyhow::anyhow!("client: {e:?}"))?;
    anyhow::ensure!(state.store.create_client(&client, "bench").await?);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = server.base_url.clone();
    let email = format!("bench-{}@bench.example", uuid::Uuid::new_v4());
    let r = http
        .post(format!("{base}/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "register: {}", r.status());
    let r = http
        .post(format!("{base}/auth/ui/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("email", email.as_str()), ("password", PASSWORD)])
        .send()
        .await?;
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect();
    let bench = Arc::new(Bench {
        http: http.clone(),
        base: base.clone(),
        secret: secret.ok_or_else(|| anyhow::anyhow!("no secret"))?,
        cookies: cookies.join("; "),
    });
    let (n, secs) = (cli.concurrency, cli.seconds);
    let kind = if db.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };

    // Codes live a minute: each loop makes its own, then exchanges it; the
    // authorization endpoint's share is reported on its own.
    let b = bench.clone();
    closed_loop(
        kind,
        "authorize (code issued)",
        n,
        secs,
        vec![(); n],
        move |()| {
            let b = b.clone();
            async move { b.code().await.map(|_| ((), true)) }
        },
    )
    .await?;
    let b = bench.clone();
    closed_loop(
        kind,
        "authorize + code exchange (ID token RS256)",
        n,
        secs,
        vec![(); n],
        move |()| {
            let b = b.clone();
            async move {
                let code = b.code().await?;
                b.exchange(&code).await.map(|_| ((), true))
            }
        },
    )
    .await?;
    // Services: a confidential client as itself, and acting for the user
    // whose first-party token it holds.
    let (svc, svc_secret) = issuer::service::oauth::clients::check(
        &issuer::service::oauth::clients::NewClient {
            client_id: "svc".into(),
            name: "Service".into(),
            kind: "confidential".into(),
            grant_types: Some(vec![
                "client_credentials".into(),
                "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            ]),
            scopes: vec!["memory:read".into()],
            audiences: vec!["https://memory.bench".into()],
            subject_clients: vec![state.settings.client_id.clone()],
            ..Default::default()
        },
        0,
    )
    .map_err(|e| anyhow::anyhow!("client: {e:?}"))?;
    anyhow::ensure!(state.store.create_client(&svc, "bench").await?);
    let svc_secret = svc_secret.ok_or_else(|| anyhow::anyhow!("no secret"))?;
    let r = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "login: {}", r.status());
    // Fresh: a personal access token needs a recent sign-in.
    let user_token = r.json::<Value>().await?["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let machine = |form: Vec<(&'static str, String)>| {
        let (h, u, s) = (http.clone(), base.clone(), svc_secret.clone());
        move |()| {
            let (h, u, s, form) = (h.clone(), u.clone(), s.clone(), form.clone());
            async move {
                let r = h
                    .post(format!("{u}/auth/oauth2/token"))
                    .basic_auth("svc", Some(&s))
                    .form(&form)
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200, "token endpoint: {}", r.status());
                Ok(((), true))
            }
        }
    };
    closed_loop(
        kind,
        "client_credentials grant (client_secret_basic)",
        n,
        secs,
        vec![(); n],
        machine(vec![("grant_type", "client_credentials".into())]),
    )
    .await?;
    closed_loop(
        kind,
        "token exchange (a service for a user, RFC 8693)",
        n,
        secs,
        vec![(); n],
        machine(vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            ),
            ("subject_token", user_token.clone()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token".into(),
            ),
            ("resource", "https://memory.bench".into()),
        ]),
    )
    .await?;
    // A script's personal access token for an access token (no client).
    let r = http
        .post(format!("{base}/auth/tokens"))
        .bearer_auth(&user_token)
        .json(&json!({"name": "bench", "scope": "notes:read"}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "personal access token: {}", r.status());
    let pat = r.json::<Value>().await?["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (h, u) = (http.clone(), base.clone());
    closed_loop(
        kind,
        "personal access token exchange (RFC 8693, no client)",
        n,
        secs,
        vec![(); n],
        move |()| {
            let (h, u, pat) = (h.clone(), u.clone(), pat.clone());
            async move {
                let r = h
                    .post(format!("{u}/auth/oauth2/token"))
                    .form(&[
                        (
                            "grant_type",
                            "urn:ietf:params:oauth:grant-type:token-exchange",
                        ),
                        ("subject_token", pat.as_str()),
                        (
                            "subject_token_type",
                            "urn:devmentor:params:oauth:token-type:personal_access_token",
                        ),
                    ])
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200, "pat exchange: {}", r.status());
                Ok(((), true))
            }
        },
    )
    .await?;

    let mut chains = Vec::new();
    for _ in 0..n {
        chains.push(refresh_of(&bench.exchange(&bench.code().await?).await?));
    }
    let b = bench.clone();
    closed_loop(
        kind,
        "refresh_token grant",
        n,
        secs,
        chains,
        move |rt: String| {
            let b = b.clone();
            async move {
                let v = b
                    .token(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
                    .await?;
                Ok((refresh_of(&v), true))
            }
        },
    )
    .await?;

    // The baselines: the issuer's own JSON sign-in and refresh.
    // `None`: the hasher's queue was full (429).
    let login = |http: reqwest::Client, base: String, email: String| async move {
        let r = http
            .post(format!("{base}/auth/login"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?;
        if r.status() == 429 {
            return anyhow::Ok(None);
        }
        anyhow::ensure!(r.status() == 200, "login: {}", r.status());
        anyhow::Ok(Some(r.json::<Value>().await?))
    };
    let (h, u, e) = (http.clone(), base.clone(), email.clone());
    closed_loop(
        kind,
        "password login (argon2id, production cost)",
        n,
        secs,
        vec![(); n],
        move |()| {
            let (h, u, e) = (h.clone(), u.clone(), e.clone());
            async move { login(h, u, e).await.map(|v| ((), v.is_some())) }
        },
    )
    .await?;
    let mut own = Vec::new();
    while own.len() < n {
        if let Some(v) = login(http.clone(), base.clone(), email.clone()).await? {
            own.push(refresh_of(&v));
        }
    }
    let (h, u) = (http.clone(), base.clone());
    closed_loop(
        kind,
        "/auth/refresh (the issuer's own)",
        n,
        secs,
        own,
        move |rt: String| {
            let (h, u) = (h.clone(), u.clone());
            async move {
                let r = h
                    .post(format!("{u}/auth/refresh"))
                    .json(&json!({"refresh_token": rt}))
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200, "refresh: {}", r.status());
                Ok((refresh_of(&r.json().await?), true))
            }
        },
    )
    .await?;
    server.stop().await;
    Ok(())
}
