//! `serve`'s settings (with mail and GitHub), their parsers, and the
//! warnings about weak production settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use auth_types::SigningAlg;
use clap::{Args, Parser};

use super::*;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[arg(long, env = "ISSUER_LISTEN", default_value = "0.0.0.0:3002")]
    pub listen: SocketAddr,
    /// The `iss` claim; also the base of the published JWKS URL.
    #[arg(long, env = "ISSUER_URL", default_value = "http://localhost:3002", value_parser = parse_http_url)]
    pub issuer_url: String,
    /// The `aud` claim of access tokens.
    #[arg(long, env = "ISSUER_AUDIENCE", default_value = "devmentor")]
    pub audience: String,
    /// The `client_id` claim (RFC 9068).
    #[arg(long, env = "ISSUER_CLIENT_ID", default_value = "devmentor-auth")]
    pub client_id: String,
    /// A session ends after this many seconds without a refresh.
    #[arg(long, env = "ISSUER_SESSION_IDLE_TIMEOUT", default_value_t = 7 * 86_400, value_parser = clap::value_parser!(i64).range(60..=365 * 86_400))]
    pub session_idle_timeout: i64,
    /// A session ends this many seconds after login, however active.
    #[arg(long, env = "ISSUER_SESSION_MAX_LIFETIME", default_value_t = 30 * 86_400, value_parser = clap::value_parser!(i64).range(60..=365 * 86_400))]
    pub session_max_lifetime: i64,
    /// A personal access token lives at most this many days (the user
    /// picks up to this; 30 if they pick none).
    #[arg(long, env = "ISSUER_PAT_MAX_LIFETIME_DAYS", default_value_t = 90, value_parser = clap::value_parser!(i64).range(1..=366))]
    pub pat_max_lifetime_days: i64,
    /// The scopes a personal access token may hold (comma-separated; the
    /// edge's rules give them meaning).
    #[arg(
        long,
        env = "ISSUER_PAT_SCOPES",
        value_delimiter = ',',
        default_value = "notes:read,memory:read"
    )]
    pub pat_scopes: Vec<String>,
    /// Refresh grace window in seconds: presenting the refresh token that was
    /// just rotated again within this time (two tabs racing, a retry after a
    /// lost response) returns the same successor instead of ending the
    /// session as token reuse. 0 is strict rotation.
    #[arg(long, env = "ISSUER_REFRESH_GRACE_SECS", default_value_t = 10, value_parser = clap::value_parser!(i64).range(0..=60))]
    pub refresh_grace_secs: i64,
    /// Device authorization grant (RFC 8628): the seconds a device waits
    /// between polls at first (each `slow_down` adds 5).
    #[arg(long, env = "ISSUER_DEVICE_POLL_INTERVAL", default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..=60))]
    pub device_poll_interval: i64,
    /// Workload identity: the clusters whose service-account tokens are
    /// taken as JWT bearer grants (RFC 7523), and how their accounts map
    /// to clients (a YAML file; docs/oauth.md). None: no workload is trusted.
    #[arg(long, env = "ISSUER_WORKLOAD_TRUST", value_name = "FILE")]
    pub workload_trust: Option<std::path::PathBuf>,
    /// How often services' counted uses (last used, uses per day) are
    /// written, in seconds (and at shutdown).
    #[arg(long, env = "ISSUER_USAGE_FLUSH_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub usage_flush_secs: u64,
    /// Team memberships an access token carries at most. A user in more
    /// teams gets `teams_overflow: true` and no list (never a silently cut
    /// one); sidecars then refuse team-scoped routes to that token.
    #[arg(long, env = "ISSUER_MAX_TOKEN_TEAMS", default_value_t = 32, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub max_token_teams: u64,
    /// Removing second factors or making new recovery codes needs an
    /// authentication (sign-in or step-up) at most this many seconds old.
    #[arg(long, env = "ISSUER_MFA_RECENT_AUTH_SECS", default_value_t = 300, value_parser = clap::value_parser!(i64).range(30..=86_400))]
    pub mfa_recent_auth_secs: i64,
    /// Users with any of these roles get no tokens until they have a
    /// second factor: sign-in answers `mfa_enrollment_required` with a
    /// ticket that can only enrol one (e.g. `admin`).
    #[arg(long, env = "ISSUER_MFA_REQUIRED_ROLES", value_delimiter = ',')]
    pub mfa_required_roles: Vec<String>,
    /// Enumeration-safe registration: `POST /auth/register` answers the
    /// same 202 whether or not the address has an account, and the owner of
    /// a taken address gets a mail saying so (needs mail to be useful).
    #[arg(long, env = "ISSUER_QUIET_REGISTRATION", default_value_t = false)]
    pub quiet_registration: bool,
    /// WebAuthn relying-party id for passkeys (a domain; default: the host
    /// of --issuer-url). Passkeys are off when the issuer URL's host is an
    /// IP address and this is not set.
    #[arg(long, env = "ISSUER_WEBAUTHN_RP_ID")]
    pub webauthn_rp_id: Option<String>,
    /// The origin of the pages that run passkey ceremonies (default: the
    /// origin of --issuer-url).
    #[arg(long, env = "ISSUER_WEBAUTHN_ORIGIN", value_parser = parse_origin)]
    pub webauthn_origin: Option<String>,
    /// Requests per client IP to the sign-in routes (`/auth/login`,
    /// `/auth/github/*`): `N/SECONDS` or `off`. Shared across replicas
    /// through --redis-url.
    #[arg(long, env = "ISSUER_RATE_LIMIT_LOGIN", default_value = "100/900")]
    pub rate_limit_login: RateSetting,
    /// Requests per client IP to `/auth/register`.
    #[arg(long, env = "ISSUER_RATE_LIMIT_REGISTER", default_value = "100/900")]
    pub rate_limit_register: RateSetting,
    /// Requests per client IP to `/auth/refresh`.
    #[arg(long, env = "ISSUER_RATE_LIMIT_REFRESH", default_value = "100/900")]
    pub rate_limit_refresh: RateSetting,
    /// Requests per client IP to `/auth/password` (and, later, reset).
    #[arg(long, env = "ISSUER_RATE_LIMIT_PASSWORD", default_value = "100/900")]
    pub rate_limit_password: RateSetting,
    /// Requests per client IP to second-factor routes (`/auth/mfa/verify`,
    /// `/auth/mfa/step-up`, `/auth/mfa/enrol*`, `/auth/passkeys/login/*`).
    #[arg(long, env = "ISSUER_RATE_LIMIT_MFA", default_value = "100/900")]
    pub rate_limit_mfa: RateSetting,
    /// A device's polls at the token endpoint (the device code grant), per
    /// client IP: a device polls every 5 s or more for up to 10 minutes, and
    /// each code's own pace is kept by `slow_down`. 720/600 lets six devices
    /// behind one address sign in at once.
    #[arg(long, env = "ISSUER_RATE_LIMIT_DEVICE", default_value = "720/600")]
    pub rate_limit_device: RateSetting,
    /// Requests per client IP to every other `/auth/*` route.
    #[arg(long, env = "ISSUER_RATE_LIMIT_OTHER", default_value = "100/900")]
    pub rate_limit_other: RateSetting,
    /// IPv6 clients are limited per network of this prefix length (one
    /// host usually holds a whole /64), IPv4 clients per address.
    #[arg(long, env = "ISSUER_RATE_LIMIT_IPV6_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(32..=128))]
    pub rate_limit_ipv6_prefix: u8,
    /// argon2id memory cost in KiB (OWASP: 19456).
    #[arg(long, env = "ISSUER_ARGON2_MEMORY_KIB", default_value_t = 19_456, value_parser = clap::value_parser!(u32).range(8..=4_194_304))]
    pub argon2_memory_kib: u32,
    /// argon2id iterations (OWASP: 2).
    #[arg(long, env = "ISSUER_ARGON2_ITERATIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub argon2_iterations: u32,
    /// argon2id parallelism (OWASP: 1).
    #[arg(long, env = "ISSUER_ARGON2_PARALLELISM", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub argon2_parallelism: u32,
    /// Password-hashing threads (they run at a lower OS priority, so hashing
    /// yields to other requests). 0 means the number of CPUs.
    #[arg(long, env = "ISSUER_HASH_CONCURRENCY", default_value_t = 0)]
    pub hash_concurrency: usize,
    /// Password checks that may wait for a hashing thread; beyond this,
    /// sign-ins get 503 with Retry-After instead of an ever longer wait.
    #[arg(long, env = "ISSUER_HASH_QUEUE", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub hash_queue: u64,
    /// Audit entries are kept this many days, then deleted.
    #[arg(long, env = "ISSUER_AUDIT_RETENTION_DAYS", default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=36_500))]
    pub audit_retention_days: i64,
    /// Rate-limit refusals are summed into one audit event per route class
    /// this often (milliseconds).
    #[arg(long, env = "ISSUER_AUDIT_REFUSALS_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000), hide = true)]
    pub audit_refusals_ms: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ISSUER_MAX_BODY_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(1024..=1_048_576))]
    pub max_body_bytes: u64,
    /// Proxies in front of the issuer that append to X-Forwarded-For (Envoy
    /// with use_remote_address counts as one). The client address is taken
    /// that many entries from the right; the left part is client-controlled.
    /// 0: ignore the header and use the peer address.
    #[arg(long, env = "ISSUER_TRUSTED_PROXY_HOPS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10))]
    pub trusted_proxy_hops: u64,
    /// Where those proxies connect from (CIDRs, comma-separated). When set,
    /// X-Forwarded-For is read only on connections from these networks; any
    /// other caller (a pod that reaches the issuer directly) is known by its
    /// own address, whatever it writes in the header.
    #[arg(long, env = "ISSUER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Redis URL for fanning revocations out between issuer replicas.
    #[arg(long, env = "ISSUER_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Shared secret followers of the revocation feed must present as a
    /// bearer token. Required unless the issuer listens on loopback only.
    #[arg(long, env = "ISSUER_FEED_TOKEN", hide_env_values = true)]
    pub feed_token: Option<String>,
    /// The feed token, read from a file (e.g. a mounted secret).
    #[arg(long, env = "ISSUER_FEED_TOKEN_FILE", conflicts_with = "feed_token")]
    pub feed_token_file: Option<PathBuf>,
    /// Revocation-feed followers (sidecars) one replica serves at once; more
    /// are refused with 503 and retry.
    #[arg(long, env = "ISSUER_MAX_FEED_FOLLOWERS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_feed_followers: u64,
    /// How often the feed re-reads the database for records committed by
    /// other replicas, in milliseconds (Redis makes this a fallback).
    #[arg(long, env = "ISSUER_FEED_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub feed_poll_ms: u64,
    /// How often followers get a heartbeat, sent only after this replica has
    /// read the revocations table up to date (also a catch-up read), in ms.
    /// Keep it well below the sidecars' --max-staleness-secs.
    #[arg(long, env = "ISSUER_FEED_HEARTBEAT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub feed_heartbeat_ms: u64,
    /// How often the key lifecycle (scheduled rotation, activation, removal)
    /// is checked, in seconds.
    #[arg(long, env = "ISSUER_KEY_TICK_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub key_tick_secs: u64,
    /// How often signing keys are re-read from the database, in seconds.
    #[arg(long, env = "ISSUER_KEY_RELOAD_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub key_reload_secs: u64,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key-file).
    /// Without it, terminate TLS in front of the issuer (Envoy, a load balancer).
    #[arg(long, env = "ISSUER_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key for --tls-cert-file.
    #[arg(long, env = "ISSUER_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// A client must send its request head, its body, and finish a TLS
    /// handshake within this many seconds each (slow clients hold nothing).
    #[arg(long, env = "ISSUER_CLIENT_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub client_timeout_secs: u64,
    /// Open connections at most; more are closed on accept.
    #[arg(long, env = "ISSUER_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Origins whose pages may call the API from a browser (CORS, with
    /// credentials), and whose unsafe requests may carry the issuer's
    /// cookies (CSRF). The issuer's own origin always may.
    #[arg(long, env = "ISSUER_CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_allowed_origins: Vec<String>,
    /// Origins (`https://app.example.com`) that sign-in may send the browser
    /// back to with `return_to`; anything else is refused (no open redirect).
    #[arg(long, env = "ISSUER_ALLOWED_RETURN_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub allowed_return_origins: Vec<String>,
    #[command(flatten)]
    pub github: GithubArgs,
    #[command(flatten)]
    pub mail: MailArgs,
    #[command(flatten)]
    pub backchannel: BackchannelArgs,
    /// Export traces over OTLP/gRPC to this collector (`http://host:4317`);
    /// off when unset. Requests continue the trace in their `traceparent`.
    #[arg(long, env = "ISSUER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces sampled (a request with a `traceparent` follows
    /// its caller's decision).
    #[arg(long, env = "ISSUER_TRACE_SAMPLE_RATIO", default_value_t = 0.1)]
    pub trace_sample_ratio: f64,
    /// text or json
    #[arg(long, env = "ISSUER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl ServeArgs {
    /// Settings that work but are weaker than production wants: logged as
    /// warnings at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let remote = |url: &str| {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            !(host.starts_with("127.")
                || host.starts_with("localhost")
                || host.starts_with("[::1]"))
        };
        let db = self.db.database_url.as_str();
        if db.starts_with("postgres")
            && remote(db)
            && !db.contains("sslmode=verify-full")
            && !db.contains("sslmode=verify-ca")
        {
            out.push(
                "the PostgreSQL URL has no sslmode=verify-full: TLS, if used, is not verified"
                    .to_string(),
            );
        }
        if let Some(redis) = self.redis_url.as_deref() {
            if redis.starts_with("redis://") && remote(redis) {
                out.push("the Redis URL is redis:// (plaintext); use rediss://".to_string());
            }
        }
        if self.trusted_proxy_hops > 0
            && self.trusted_proxies.is_empty()
            && !self.listen.ip().is_loopback()
        {
            out.push(
                "--trusted-proxy-hops without --trusted-proxies: any caller that reaches the \
                 issuer directly can choose the address it is known by"
                    .to_string(),
            );
        }
        out
    }

    /// Settings a test server starts from: everything default but the
    /// database. The environment is ignored, so a developer's `ISSUER_*`
    /// variables cannot change what tests run against.
    pub fn with_database(database_url: &str) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let command = ServeOnly::command().mut_args(|a| a.env(None::<&str>));
        let parsed = command
            .try_get_matches_from(["serve"])
            .and_then(|m| ServeOnly::from_arg_matches(&m));
        let mut args = match parsed {
            Ok(only) => only.args,
            Err(e) => panic!("built-in defaults must parse: {e}"),
        };
        args.db.database_url = database_url.to_string();
        args
    }

    pub fn is_embedded(&self) -> bool {
        self.db.database_url.starts_with("sqlite:")
    }
}

/// Mail over SMTP (verification, password reset, security notices). Off
/// unless an SMTP URL is given; then nothing is mailed and password reset
/// cannot be used.
#[derive(Debug, Clone, Args)]
pub struct MailArgs {
    /// `smtps://user:pass@host:465` (TLS), `smtp://host:587?tls=required`
    /// (STARTTLS), or `smtp://host:25` (plain: only for a local relay).
    #[arg(long, env = "ISSUER_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// The From of every mail.
    #[arg(
        long,
        env = "ISSUER_MAIL_FROM",
        default_value = "DevMentor Auth <no-reply@localhost>"
    )]
    pub mail_from: String,
    /// How long an email verification link works (seconds).
    #[arg(long, env = "ISSUER_EMAIL_VERIFY_TTL_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(300..=30 * 86_400))]
    pub email_verify_ttl_secs: i64,
    /// How long a password reset link works (seconds).
    #[arg(long, env = "ISSUER_PASSWORD_RESET_TTL_SECS", default_value_t = 1_800, value_parser = clap::value_parser!(i64).range(60..=86_400))]
    pub password_reset_ttl_secs: i64,
    /// A failed delivery is retried after this long, doubling each time (ms).
    #[arg(long, env = "ISSUER_MAIL_RETRY_BASE_MS", default_value_t = 5_000, value_parser = clap::value_parser!(i64).range(10..=3_600_000))]
    pub mail_retry_base_ms: i64,
    /// Deliveries tried at most, then the mail is marked failed.
    #[arg(long, env = "ISSUER_MAIL_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..=100))]
    pub mail_max_attempts: i64,
    /// How often the outbox is checked for due mail (ms); new mail on this
    /// replica is sent at once.
    #[arg(long, env = "ISSUER_MAIL_POLL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub mail_poll_ms: u64,
}

/// Back-channel logout (OpenID Connect): logout tokens delivered to the
/// clients that registered a `backchannel_logout_uri` when a session of
/// theirs ends.
#[derive(Debug, Clone, Args)]
pub struct BackchannelArgs {
    /// A failed delivery is retried after this long, doubling each time (ms).
    #[arg(long, env = "ISSUER_BACKCHANNEL_RETRY_BASE_MS", default_value_t = 5_000, value_parser = clap::value_parser!(i64).range(10..=3_600_000))]
    pub backchannel_retry_base_ms: i64,
    /// Deliveries tried at most, then given up (and audited).
    #[arg(long, env = "ISSUER_BACKCHANNEL_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(i64).range(1..=50))]
    pub backchannel_max_attempts: i64,
    /// How often due deliveries are checked (ms); sessions ended on this
    /// replica are delivered at once.
    #[arg(long, env = "ISSUER_BACKCHANNEL_POLL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub backchannel_poll_ms: u64,
    /// How long one delivery may take (ms).
    #[arg(long, env = "ISSUER_BACKCHANNEL_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub backchannel_timeout_ms: u64,
}

/// Sign in with GitHub (an OAuth app). Off unless a client id is given.
#[derive(Debug, Clone, Args)]
pub struct GithubArgs {
    /// The OAuth app's client id; enables GitHub sign-in.
    #[arg(long, env = "ISSUER_GITHUB_CLIENT_ID")]
    pub github_client_id: Option<String>,
    /// The OAuth app's client secret, read from this file (preferred).
    #[arg(long, env = "ISSUER_GITHUB_CLIENT_SECRET_FILE")]
    pub github_client_secret_file: Option<PathBuf>,
    /// The client secret itself (environment only in practice; never logged).
    #[arg(long, env = "ISSUER_GITHUB_CLIENT_SECRET", hide_env_values = true)]
    pub github_client_secret: Option<Secret>,
    /// GitHub's web address (GitHub Enterprise: your server; tests: the fake).
    #[arg(long, env = "ISSUER_GITHUB_WEB_URL", default_value = "https://github.com", value_parser = parse_http_url)]
    pub github_web_url: String,
    /// GitHub's REST API address.
    #[arg(long, env = "ISSUER_GITHUB_API_URL", default_value = "https://api.github.com", value_parser = parse_http_url)]
    pub github_api_url: String,
    /// Only members of these organisations may sign in (adds `read:org`).
    #[arg(long, env = "ISSUER_GITHUB_ALLOWED_ORGS", value_delimiter = ',')]
    pub github_allowed_orgs: Vec<String>,
    /// Only members of these teams (`org/team-slug`) may sign in (adds `read:org`).
    #[arg(long, env = "ISSUER_GITHUB_ALLOWED_TEAMS", value_delimiter = ',', value_parser = parse_team)]
    pub github_allowed_teams: Vec<String>,
    /// Each call to GitHub must answer within this many milliseconds.
    #[arg(long, env = "ISSUER_GITHUB_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub github_timeout_ms: u64,
}

/// A secret setting: printed as `[redacted]`.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Secret(s.trim().to_string()))
    }
}

pub(super) fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (10.0.0.0/8) or an address"))
}

pub(super) fn parse_origin(s: &str) -> Result<String, String> {
    let url = parse_http_url(s)?;
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    if rest.contains(['/', '?', '#', '@']) {
        return Err("expected an origin: scheme://host[:port], no path".into());
    }
    Ok(url.to_ascii_lowercase())
}

pub(super) fn parse_team(s: &str) -> Result<String, String> {
    match s.split_once('/') {
        Some((org, team)) if !org.is_empty() && !team.is_empty() && !team.contains('/') => {
            Ok(s.to_string())
        }
        _ => Err("expected org/team-slug".into()),
    }
}

// Lets `ServeArgs::with_database` parse the serve settings alone.
#[derive(Parser)]
struct ServeOnly {
    #[command(flatten)]
    args: ServeArgs,
}

pub(super) fn parse_database_url(s: &str) -> Result<String, String> {
    if s.starts_with("sqlite:") || s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(s.to_string())
    } else {
        Err("expected sqlite://PATH or postgres://…".into())
    }
}

pub(super) fn parse_http_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or("expected an http:// or https:// URL")?;
    if rest.is_empty() || s.ends_with('/') {
        return Err("expected a URL with a host and no trailing slash".into());
    }
    Ok(s.to_string())
}

pub(super) fn parse_alg(s: &str) -> Result<SigningAlg, String> {
    SigningAlg::parse(s).ok_or_else(|| "expected ES256, EdDSA or RS256".into())
}

#[cfg(test)]
mod warning_tests {
    use super::ServeArgs;

    #[test]
    fn weak_production_settings_are_named() {
        let mut args = ServeArgs::with_database("postgres://u:p@db.internal:5432/auth");
        args.redis_url = Some("redis://cache.internal:6379".into());
        args.trusted_proxy_hops = 1;
        args.listen = "0.0.0.0:3002".parse().expect("addr");
        let w = args.warnings().join("\n");
        assert!(w.contains("sslmode=verify-full"), "{w}");
        assert!(w.contains("rediss://"), "{w}");
        assert!(w.contains("--trusted-proxies"), "{w}");
        let mut args = ServeArgs::with_database(
            "postgres://u:p@db.internal:5432/auth?sslmode=verify-full&sslrootcert=/ca.crt",
        );
        args.redis_url = Some("rediss://cache.internal:6379".into());
        assert!(args.warnings().is_empty(), "{:?}", args.warnings());
        // Loopback services (the demo, the tests) are not warned about.
        let args = ServeArgs::with_database("postgres://postgres@127.0.0.1:5432/x");
        assert!(args.warnings().is_empty());
    }
}
