//! A whole stack on loopback: the real issuer, the real sidecar, echo
//! upstreams and a real Envoy (the PyPI build provided by ./scripts/test.sh).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::Json;
use issuer::config::ServeArgs;
use issuer::domain::clock::SystemClock;
use issuer::testing::{self, RunningIssuer};
use serde_json::{json, Value};
use sidecar::config::Settings;
use tokio::sync::oneshot;

pub const PASSWORD: &str = "correct horse battery staple";

pub fn envoy_bin() -> Option<String> {
    testing::required_service("DM_TEST_ENVOY", "Envoy")
}

/// Which front end makes the decision: the sidecar over ext_authz gRPC, or
/// the same core inside Envoy as a dynamic module (authz-module/).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    Sidecar,
    Module,
}

/// Runs an async test body once per front end, as two tests.
#[macro_export]
macro_rules! both_fronts {
    ($name:ident) => {
        mod $name {
            use $crate::support::Front;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sidecar() {
                super::$name(Front::Sidecar).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn module() {
                super::$name(Front::Module).await
            }
        }
    };
}

/// The directory holding libdevmentor_authz.so (built by ./scripts/test.sh).
pub fn module_dir() -> Option<String> {
    testing::required_service("DM_TEST_AUTHZ_MODULE", "the Envoy module (authz-module)")
}

/// `sidecar serve`'s flags for `s`: the module's filter config. Every
/// setting must survive the trip (checked, so a test tweaking a setting
/// this does not carry fails here rather than testing something else).
pub fn module_args(s: &Settings) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut kv = |k: &str, v: String| {
        a.push(format!("--{k}"));
        a.push(v);
    };
    kv("issuer-url", s.issuer_url.clone());
    if let Some(e) = &s.expected_issuer {
        kv("expected-issuer", e.clone());
    }
    kv("audience", s.audience.clone());
    kv("policy", s.policy.display().to_string());
    kv("policy-reload-secs", s.policy_reload_secs.to_string());
    kv("jwks-refresh-secs", s.jwks_refresh_secs.to_string());
    kv(
        "unknown-kid-cooldown-ms",
        s.unknown_kid_cooldown_ms.to_string(),
    );
    kv("max-staleness-secs", s.max_staleness_secs.to_string());
    kv("reconcile-secs", s.reconcile_secs.to_string());
    kv("leeway-secs", s.leeway_secs.to_string());
    kv("user-id-header", s.user_id_header.clone());
    kv("roles-header", s.roles_header.clone());
    kv("session-header", s.session_header.clone());
    kv("client-id-header", s.client_id_header.clone());
    kv("actor-id-header", s.actor_id_header.clone());
    kv("token-cache-capacity", s.token_cache_capacity.to_string());
    if let Some(c) = &s.token_cookie {
        kv("token-cookie", c.clone());
    }
    if let Some(o) = &s.public_origin {
        kv("public-origin", o.clone());
    }
    if let Some(t) = &s.feed_token {
        kv("feed-token", t.clone());
    }
    if let Some(p) = &s.issuer_ca_file {
        kv("issuer-ca-file", p.display().to_string());
    }
    if let Some(p) = &s.state_dir {
        kv("state-dir", p.display().to_string());
    }
    for (on, flag) in [
        (s.strip_authorization, "--strip-authorization"),
        (s.allow_metadata, "--allow-metadata"),
        (s.allow_plaintext_issuer, "--allow-plaintext-issuer"),
    ] {
        if on {
            a.push(flag.to_string());
        }
    }
    let parsed = Settings::from_args(&a).expect("module args parse");
    let mut want = s.clone();
    want.validate().expect("valid settings");
    let comparable = |mut x: Settings| {
        x.listen = want.listen;
        x.admin_listen = want.admin_listen;
        format!("{x:?}")
    };
    assert_eq!(
        comparable(parsed),
        comparable(want.clone()),
        "a setting the module's args do not carry"
    );
    a
}

/// Renders the shipped template with the shipped renderer
/// (scripts/render-envoy.py), so the tests run the configs users get.
/// `ports`: `NAME_PORT` values on loopback, or any `KEY=VALUE` the renderer
/// takes through `extra`.
pub fn render(ports: &[(&str, u16)]) -> String {
    render_with(ports, &[])
}

pub fn render_with(ports: &[(&str, u16)], extra: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/render-envoy.py"
    ));
    for (name, port) in ports {
        cmd.arg("--set").arg(format!("{name}={port}"));
    }
    cmd.args(extra);
    let out = cmd.output().expect("python3 scripts/render-envoy.py");
    assert!(
        out.status.success(),
        "render-envoy.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(!text.contains("{{"), "unrendered placeholder");
    text
}

pub fn policy_file() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/policy.yaml"))
}

/// What the most lenient of upstreams could make of a raw path: decode
/// percent-escapes until nothing changes (double encoding) with overlong
/// UTF-8 accepted, fold fullwidth forms to ASCII (NFKC, Windows best-fit),
/// treat `\\` as `/`, drop `;` path parameters (servlet containers), strip
/// trailing dots and spaces from segments (Windows), merge slashes, resolve
/// dot segments, ignore case, and drop the last segment's extension (suffix
/// pattern matching).
pub fn lenient_normalise(raw: &str) -> String {
    let mut path = raw.split('?').next().unwrap_or_default().to_string();
    for _ in 0..4 {
        let decoded = percent_decode(&path);
        if decoded == path {
            break;
        }
        path = decoded;
    }
    let path: String = path
        .chars()
        .map(|c| match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            0x2024 => '.',
            _ => c,
        })
        .collect::<String>()
        .replace('\\', "/")
        .to_ascii_lowercase();
    let mut out: Vec<String> = Vec::new();
    for segment in path.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        let segment = if segment == "." || segment == ".." {
            segment
        } else {
            segment.trim_end_matches(['.', ' ', '\t'])
        };
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    if let Some(last) = out.last_mut() {
        if let Some(dot) = last.rfind('.').filter(|d| *d > 0) {
            last.truncate(dot);
        }
    }
    let trailing = path.ends_with('/') && !out.is_empty();
    format!("/{}{}", out.join("/"), if trailing { "/" } else { "" })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    decode_lenient_utf8(&out)
}

/// UTF-8 as a careless decoder reads it: overlong two-byte forms accepted.
fn decode_lenient_utf8(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if (0xC0..=0xC1).contains(&b) && i + 1 < bytes.len() {
            out.push(char::from(((b & 0x1F) << 6) | (bytes[i + 1] & 0x3F)));
            i += 2;
            continue;
        }
        let len = match b {
            0xF0..=0xF7 => 4,
            0xE0..=0xEF => 3,
            0xC2..=0xDF => 2,
            _ => 1,
        };
        let end = (i + len).min(bytes.len());
        out.push_str(&String::from_utf8_lossy(&bytes[i..end]));
        i = end;
    }
    out
}

/// An upstream that answers with what it received, and with what a lenient
/// server would have made of the path.
pub async fn echo_upstream(name: &'static str) -> SocketAddr {
    let app = axum::Router::new().fallback(move |req: Request| async move {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in req.headers() {
            headers
                .entry(k.as_str().to_string())
                .or_default()
                .push(v.to_str().unwrap_or("").to_string());
        }
        let raw = req.uri().path().to_string();
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        Json(json!({
            "upstream": name,
            "normalised": lenient_normalise(&raw),
            "path": raw,
            "headers": headers,
            "body_len": body.len(),
            "body_sha256": hex_sha256(&body),
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn hex_sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct RunningSidecar {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    authz: Arc<sidecar::authz::Authorizer>,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningSidecar {
    pub fn authz(&self) -> &sidecar::authz::Authorizer {
        &self.authz
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.handle).await;
    }
}

pub fn sidecar_settings(issuer_url: &str) -> Settings {
    let mut s = Settings::for_tests(issuer_url, policy_file());
    s.expected_issuer = Some(testing::TEST_ISSUER_URL.into());
    s.audience = testing::TEST_AUDIENCE.into();
    s.jwks_refresh_secs = 1;
    s.max_staleness_secs = 30;
    s
}

pub async fn start_sidecar(settings: Settings, grpc_port: u16) -> RunningSidecar {
    let grpc = tokio::net::TcpListener::bind(("127.0.0.1", grpc_port))
        .await
        .expect("bind grpc");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind admin");
    let (grpc_addr, admin_addr) = (
        grpc.local_addr().expect("addr"),
        admin.local_addr().expect("addr"),
    );
    let sidecar = sidecar::start(settings).await.expect("sidecar starts");
    let authz = sidecar.authz.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(sidecar.serve(grpc, admin, async {
        let _ = stopped.await;
    }));
    let running = RunningSidecar {
        grpc: grpc_addr,
        admin: admin_addr,
        authz,
        stop: Some(stop),
        handle,
    };
    // Ready means keys and a revocation snapshot are in memory.
    let url = format!("http://{admin_addr}/ready");
    wait_until(Duration::from_secs(10), || async {
        reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("sidecar ready");
    running
}

pub struct Envoy {
    child: Child,
    pub port: u16,
    /// Every listener's name and port.
    pub listeners: Vec<(String, u16)>,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// The port of the listener called `name`.
    pub fn listener(&self, name: &str) -> u16 {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no listener {name}: {:?}", self.listeners))
    }

    /// What Envoy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Its access log so far (stdout; flushed every 100 ms).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Envoy binds its own ports (0: any free one) and reports them, so no port
/// is ever picked, released and hoped to be free again.
pub async fn start_envoy(envoy: &str, issuer: u16, sidecar: u16, ai: u16, memory: u16) -> Envoy {
    start_envoy_with(envoy, issuer, sidecar, ai, memory, &[]).await
}

/// [`start_envoy`] with more of the renderer's arguments (`extra`).
pub async fn start_envoy_with(
    envoy: &str,
    issuer: u16,
    sidecar: u16,
    ai: u16,
    memory: u16,
    extra: &[&str],
) -> Envoy {
    let config = render_with(
        &[
            ("ENVOY_PORT", 0),
            ("ENVOY_ADMIN_PORT", 0),
            ("SIDECAR_PORT", sidecar),
            ("ISSUER_PORT", issuer),
            ("AI_GATEWAY_PORT", ai),
            ("MEMORY_PORT", memory),
        ],
        extra,
    );
    start_envoy_config(envoy, config).await
}

/// Envoy with a config already rendered (listener and admin ports 0).
pub async fn start_envoy_config(envoy: &str, config: String) -> Envoy {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("envoy.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let admin_path = dir.path().join("admin-address");
    let log = std::fs::File::create(dir.path().join("envoy.log")).expect("log");
    let access = std::fs::File::create(dir.path().join("access.log")).expect("access log");
    let mut command = Command::new(envoy);
    // Where a module config finds libdevmentor_authz.so.
    if let Ok(dir) = std::env::var("DM_TEST_AUTHZ_MODULE") {
        command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
    }
    let child = command
        .arg("-c")
        .arg(&config_path)
        .arg("--admin-address-path")
        .arg(&admin_path)
        .args([
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "-l",
            "warning",
            "--file-flush-interval-msec",
            "100",
        ])
        .stdout(access)
        .stderr(log)
        .spawn()
        .expect("spawn envoy");
    let mut envoy = Envoy {
        child,
        port: 0,
        listeners: Vec::new(),
        _dir: dir,
    };
    let fail = |envoy: &Envoy, what: &str| -> ! {
        let log = std::fs::read_to_string(envoy._dir.path().join("envoy.log")).unwrap_or_default();
        panic!("envoy {what}:\n{log}");
    };
    let reported = || {
        std::fs::read_to_string(&admin_path)
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    };
    if wait_until(Duration::from_secs(20), || {
        let ok = !reported().is_empty();
        async move { ok }
    })
    .await
    .is_err()
    {
        fail(&envoy, "did not report its admin address");
    }
    let admin = reported();
    let ready = format!("http://{admin}/ready");
    if wait_until(Duration::from_secs(20), || async {
        reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200)
    })
    .await
    .is_err()
    {
        fail(&envoy, "did not become ready");
    }
    let listeners: Value = reqwest::get(format!("http://{admin}/listeners?format=json"))
        .await
        .expect("listeners")
        .json()
        .await
        .expect("json");
    for status in listeners["listener_statuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let port = status["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| fail(&envoy, &format!("listener port unknown: {listeners}")));
        let name = status["name"].as_str().unwrap_or_default().to_string();
        envoy.listeners.push((name, port));
    }
    envoy.port = envoy.listener("front");
    envoy
}

pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> Result<Duration, ()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(())
}

/// Issuer + sidecar + upstreams + Envoy.
pub struct Stack {
    pub issuer: Option<RunningIssuer>,
    pub sidecar: Option<RunningSidecar>,
    pub envoy: Envoy,
    pub http: reqwest::Client,
    _db: tempfile::TempDir,
}

impl Stack {
    pub async fn start(tweak_sidecar: impl FnOnce(&mut Settings)) -> Option<Stack> {
        Self::start_with(|_| {}, tweak_sidecar).await
    }

    pub async fn start_with(
        tweak_issuer: impl FnOnce(&mut ServeArgs),
        tweak_sidecar: impl FnOnce(&mut Settings),
    ) -> Option<Stack> {
        Self::start_on(false, tweak_issuer, tweak_sidecar).await
    }

    /// The stack with `front` making the decisions. With the module there
    /// is no sidecar: Envoy decides, from the same settings.
    pub async fn start_front(
        front: Front,
        tweak_issuer: impl FnOnce(&mut ServeArgs),
        tweak_sidecar: impl FnOnce(&mut Settings),
    ) -> Option<Stack> {
        if front == Front::Sidecar {
            return Self::start_on(false, tweak_issuer, tweak_sidecar).await;
        }
        let envoy_bin = envoy_bin()?;
        module_dir()?;
        let db = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/issuer.db", db.path().display());
        let mut args = testing::test_args(&url, db.path());
        tweak_issuer(&mut args);
        let issuer = start_issuer(args).await;
        let mut settings = sidecar_settings(&issuer.base_url);
        tweak_sidecar(&mut settings);
        let ai = echo_upstream("ai-gateway").await;
        let memory = echo_upstream("memory-service").await;
        let mut extra = vec!["--authz".to_string(), "module".to_string()];
        for arg in module_args(&settings) {
            extra.push(format!("--module-arg={arg}"));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let config = render_with(
            &[
                ("ENVOY_PORT", 0),
                ("ENVOY_ADMIN_PORT", 0),
                ("ISSUER_PORT", issuer.addr.port()),
                ("AI_GATEWAY_PORT", ai.port()),
                ("MEMORY_PORT", memory.port()),
            ],
            &extra,
        );
        let envoy = start_envoy_config(&envoy_bin, config).await;
        let stack = Stack {
            issuer: Some(issuer),
            sidecar: None,
            envoy,
            http: reqwest::Client::new(),
            _db: db,
        };
        // Ready once it judges instead of failing closed: a protected route
        // without a token is a 401, not the not-ready 503.
        wait_until(Duration::from_secs(10), || async {
            stack.get("/ai/ready", None).await.status() == 401
        })
        .await
        .expect("the module has keys and revocations");
        Some(stack)
    }

    /// With `postgres`, the issuer uses a fresh database on the test server.
    pub async fn start_on(
        postgres: bool,
        tweak_issuer: impl FnOnce(&mut ServeArgs),
        tweak_sidecar: impl FnOnce(&mut Settings),
    ) -> Option<Stack> {
        Self::start_full(postgres, false, tweak_issuer, tweak_sidecar).await
    }

    /// With `own_url`, the issuer's URL (its `iss`, and what discovery
    /// names) is its own loopback address, for a client run as a process.
    pub async fn start_full(
        postgres: bool,
        own_url: bool,
        tweak_issuer: impl FnOnce(&mut ServeArgs),
        tweak_sidecar: impl FnOnce(&mut Settings),
    ) -> Option<Stack> {
        let envoy_bin = envoy_bin()?;
        let db = tempfile::tempdir().expect("tempdir");
        let url = if postgres {
            let admin = testing::required_service("DM_TEST_POSTGRES_URL", "PostgreSQL")?;
            testing::fresh_postgres_database(&admin)
                .await
                .expect("create test database")
        } else {
            format!("sqlite://{}/issuer.db", db.path().display())
        };
        let mut args = testing::test_args(&url, db.path());
        tweak_issuer(&mut args);
        let issuer = if own_url {
            testing::start_at_own_url(args, Arc::new(SystemClock))
                .await
                .expect("issuer starts")
        } else {
            start_issuer(args).await
        };
        let mut settings = sidecar_settings(&issuer.base_url);
        settings.expected_issuer = Some(issuer.state.settings.issuer_url.clone());
        tweak_sidecar(&mut settings);
        let sidecar = start_sidecar(settings, 0).await;
        let ai = echo_upstream("ai-gateway").await;
        let memory = echo_upstream("memory-service").await;
        let envoy = start_envoy(
            &envoy_bin,
            issuer.addr.port(),
            sidecar.grpc.port(),
            ai.port(),
            memory.port(),
        )
        .await;
        Some(Stack {
            issuer: Some(issuer),
            sidecar: Some(sidecar),
            envoy,
            http: reqwest::Client::new(),
            _db: db,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.envoy.port)
    }

    pub fn issuer(&self) -> &RunningIssuer {
        self.issuer.as_ref().expect("issuer running")
    }

    /// Registers and logs in through Envoy (public routes).
    pub async fn login(&self, email: &str) -> Value {
        let r = self
            .http
            .post(self.url("/auth/register"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), 201, "register through envoy");
        self.login_again(email).await
    }

    pub async fn login_again(&self, email: &str) -> Value {
        let r = self
            .http
            .post(self.url("/auth/login"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 200, "login through envoy");
        r.json().await.expect("json")
    }

    /// Signs in on the hosted pages through Envoy, as a browser does: the
    /// cookies it then holds, as one `cookie` header.
    pub async fn page_cookies(&self, email: &str) -> String {
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .post(self.url("/auth/ui/login"))
            .header("sec-fetch-site", "same-origin")
            .form(&[("email", email), ("password", PASSWORD)])
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 303);
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(str::to_string)
            .collect();
        cookies.join("; ")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request through envoy")
    }

    /// A personal access token made through Envoy with `session` (a fresh
    /// sign-in's token); `body`: the request (name, scope, days). Answers
    /// the whole reply (`token`, `personal_token`).
    pub async fn personal_token(&self, session: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.url("/auth/tokens"))
            .bearer_auth(session)
            .json(&body)
            .send()
            .await
            .expect("create a personal access token");
        assert_eq!(r.status(), 201);
        r.json().await.expect("json")
    }

    /// `pat` exchanged at the token endpoint through Envoy (RFC 8693, the
    /// issuer's token type), with a DPoP proof if given; the reply, 200.
    pub async fn exchange_pat(&self, pat: &str, proof: Option<String>) -> Value {
        let mut req = self.http.post(self.url("/auth/oauth2/token")).form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", pat),
            (
                "subject_token_type",
                "urn:devmentor:params:oauth:token-type:personal_access_token",
            ),
        ]);
        if let Some(p) = proof {
            req = req.header("dpop", p);
        }
        let r = req.send().await.expect("exchange");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }
}

pub async fn start_issuer(args: ServeArgs) -> RunningIssuer {
    testing::start(args, Arc::new(SystemClock))
        .await
        .expect("issuer starts")
}

pub fn token(v: &Value) -> String {
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// Runs a test script with the tools' Python, off the async runtime:
/// whether it succeeded, and what it printed (stdout, then stderr).
pub async fn run_script(python: String, args: Vec<String>) -> (bool, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(&args)
            .output()
            .expect("run python")
    })
    .await
    .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
