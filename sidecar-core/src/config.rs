//! Sidecar settings: flags with environment fallbacks. A bad value exits 64
//! with one line naming the setting.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(name = "sidecar", version, about = "DevMentor Auth ext_authz sidecar")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Serve Envoy's ext_authz gRPC API.
    Serve(Box<Settings>),
    /// Check a route policy file and exit (0: valid; 65: the first error,
    /// with its line). For CI and for a ConfigMap before it rolls out.
    CheckPolicy {
        /// The policy file (YAML).
        file: PathBuf,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// gRPC listener for envoy.service.auth.v3.Authorization.
    /// Loopback by default: only the Envoy beside it should ask.
    #[arg(long, env = "SIDECAR_LISTEN", default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,
    /// Also serve ext_authz on this Unix domain socket (for Envoy in the
    /// same pod: a `pipe` address, no TCP stack on the Check path).
    #[arg(long, env = "SIDECAR_LISTEN_UNIX")]
    pub listen_unix: Option<std::path::PathBuf>,
    /// /health, /ready and /metrics.
    #[arg(long, env = "SIDECAR_ADMIN_LISTEN", default_value = "0.0.0.0:9002")]
    pub admin_listen: SocketAddr,
    /// Where to reach the issuer (JWKS and revocation feed).
    #[arg(long, env = "SIDECAR_ISSUER_URL", default_value = "http://127.0.0.1:3002", value_parser = parse_http_url)]
    pub issuer_url: String,
    /// Required `iss` claim; defaults to --issuer-url.
    #[arg(long, env = "SIDECAR_EXPECTED_ISSUER")]
    pub expected_issuer: Option<String>,
    /// Required `aud` member.
    #[arg(long, env = "SIDECAR_AUDIENCE", default_value = "devmentor")]
    pub audience: String,
    /// Route policy YAML; reloaded when it changes.
    #[arg(long, env = "SIDECAR_POLICY")]
    pub policy: PathBuf,
    #[arg(long, env = "SIDECAR_POLICY_RELOAD_SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub policy_reload_secs: u64,
    /// JWKS refresh interval in seconds.
    #[arg(long, env = "SIDECAR_JWKS_REFRESH_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub jwks_refresh_secs: u64,
    /// Minimum time between JWKS fetches triggered by unknown `kid`s, in ms.
    #[arg(long, env = "SIDECAR_UNKNOWN_KID_COOLDOWN_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub unknown_kid_cooldown_ms: u64,
    /// Keep deciding from last-known keys and revocations for this long
    /// without contact with the issuer; after that, deny everything (503).
    #[arg(long, env = "SIDECAR_MAX_STALENESS_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_staleness_secs: u64,
    /// Full revocation re-read interval, in seconds (the stream is resumable;
    /// this guards against anything a reconnect could miss).
    #[arg(long, env = "SIDECAR_RECONCILE_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub reconcile_secs: u64,
    /// Clock skew tolerated on exp/nbf/iat, in seconds. At most the leeway
    /// the issuer keeps revocation records for (auth_types::MAX_LEEWAY_SECS).
    #[arg(long, env = "SIDECAR_LEEWAY_SECS", default_value_t = 30, value_parser = clap::value_parser!(i64).range(0..=auth_types::MAX_LEEWAY_SECS))]
    pub leeway_secs: i64,
    /// Also accept the token from this cookie.
    #[arg(long, env = "SIDECAR_TOKEN_COOKIE")]
    pub token_cookie: Option<String>,
    /// The origin clients address (`https://mesh.example`): DPoP proofs'
    /// `htu` must name it, whatever scheme and Host the proxy saw (behind
    /// a TLS-terminating load balancer; and no proof made for another
    /// host passes). Unset: the request's own scheme and Host.
    #[arg(long, env = "SIDECAR_PUBLIC_ORIGIN", value_parser = parse_http_url)]
    pub public_origin: Option<String>,
    #[arg(long, env = "SIDECAR_USER_ID_HEADER", default_value = "x-user-id")]
    pub user_id_header: String,
    #[arg(long, env = "SIDECAR_ROLES_HEADER", default_value = "x-user-roles")]
    pub roles_header: String,
    #[arg(long, env = "SIDECAR_SESSION_HEADER", default_value = "x-session-id")]
    pub session_header: String,
    /// The token's OAuth client (`client_id`), for gateways that tell apps apart.
    #[arg(long, env = "SIDECAR_CLIENT_ID_HEADER", default_value = "x-client-id")]
    pub client_id_header: String,
    /// The service acting for the user (a delegated token's `act`,
    /// RFC 8693); removed when nobody acts for anyone.
    #[arg(long, env = "SIDECAR_ACTOR_ID_HEADER", default_value = "x-actor-id")]
    pub actor_id_header: String,
    /// The issuer's cookies (session, pages, sign-in state): removed from
    /// the `cookie` header of every request the edge forwards, so no
    /// application or its logs ever holds them. The issuer's own routes
    /// (`/auth/`, `/.well-known/`) do not pass the decision and keep them.
    #[arg(
        long = "strip-cookie",
        env = "SIDECAR_STRIP_COOKIES",
        value_delimiter = ',',
        default_values = ["__Host-refresh_token", "__Secure-page_token", "__Host-github_oauth"]
    )]
    pub strip_cookies: Vec<String>,
    /// Remove the Authorization header before the request reaches the upstream.
    #[arg(long, env = "SIDECAR_STRIP_AUTHORIZATION", default_value_t = false)]
    pub strip_authorization: bool,
    /// Also attach dynamic metadata (decision, rule, user id) to allows, for
    /// Envoy's access log; it costs Envoy CPU on every request. Denies always
    /// carry their reason.
    #[arg(long, env = "SIDECAR_ALLOW_METADATA", default_value_t = false)]
    pub allow_metadata: bool,
    /// Also answer HTTP forward-auth (nginx auth_request, Traefik
    /// forwardAuth) at the admin listener's `/authz`. It trusts the
    /// `X-Forwarded-*` headers: only the proxy may reach that listener.
    #[arg(long, env = "SIDECAR_FORWARD_AUTH", default_value_t = false)]
    pub forward_auth: bool,
    /// Allow --forward-auth on an admin listener that is not loopback
    /// (protect it otherwise: anyone who reaches it can ask about any
    /// request and token).
    #[arg(
        long,
        env = "SIDECAR_FORWARD_AUTH_ALLOW_REMOTE",
        default_value_t = false
    )]
    pub forward_auth_allow_remote: bool,
    /// Export traces over OTLP/gRPC to this collector (`http://host:4317`);
    /// off when unset. Each Check continues the trace Envoy started.
    #[arg(long, env = "SIDECAR_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces sampled (a Check that continues Envoy's trace
    /// follows Envoy's decision).
    #[arg(long, env = "SIDECAR_TRACE_SAMPLE_RATIO", default_value_t = 0.1)]
    pub trace_sample_ratio: f64,
    /// Bearer token for the issuer's revocation feed; required unless the
    /// issuer is on loopback.
    #[arg(long, env = "SIDECAR_FEED_TOKEN", hide_env_values = true)]
    pub feed_token: Option<String>,
    /// The feed token, read from a file (e.g. a mounted secret).
    #[arg(long, env = "SIDECAR_FEED_TOKEN_FILE", conflicts_with = "feed_token")]
    pub feed_token_file: Option<PathBuf>,
    /// Allow plain http:// to an issuer that is not on loopback (only where
    /// something else encrypts and authenticates the link, e.g. a mesh's
    /// mTLS): over plain HTTP anyone on the path could serve their own keys.
    #[arg(long, env = "SIDECAR_ALLOW_PLAINTEXT_ISSUER", default_value_t = false)]
    pub allow_plaintext_issuer: bool,
    /// PEM file of CA certificates trusted for an https:// issuer, in
    /// addition to the system's roots.
    #[arg(long, env = "SIDECAR_ISSUER_CA_FILE")]
    pub issuer_ca_file: Option<PathBuf>,
    /// Last-known keys and revocations are kept here and used at start when
    /// the issuer is unreachable (still bounded by --max-staleness-secs).
    #[arg(long, env = "SIDECAR_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Verified tokens kept in memory.
    #[arg(long, env = "SIDECAR_TOKEN_CACHE_CAPACITY", default_value_t = 100_000)]
    pub token_cache_capacity: u64,
    /// text or json
    #[arg(long, env = "SIDECAR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl Settings {
    pub fn expected_issuer(&self) -> String {
        self.expected_issuer
            .clone()
            .unwrap_or_else(|| self.issuer_url.clone())
    }

    /// Cross-setting rules clap cannot express; reads the feed-token file.
    pub fn validate(&mut self) -> Result<(), String> {
        if self.forward_auth
            && !self.admin_listen.ip().is_loopback()
            && !self.forward_auth_allow_remote
        {
            return Err(format!(
                "--forward-auth answers on the admin listener, and {} is not loopback: bind it to \
                 127.0.0.1 beside the proxy, or pass --forward-auth-allow-remote if only the proxy \
                 can reach it (e.g. a NetworkPolicy)",
                self.admin_listen
            ));
        }
        if self.max_staleness_secs <= self.jwks_refresh_secs {
            return Err("--max-staleness-secs must exceed --jwks-refresh-secs, or keys go stale between refreshes".into());
        }
        if let Some(path) = &self.feed_token_file {
            let token = std::fs::read_to_string(path)
                .map_err(|e| format!("--feed-token-file {}: {e}", path.display()))?;
            let token = token.trim();
            if token.is_empty() {
                return Err(format!("--feed-token-file {}: empty", path.display()));
            }
            self.feed_token = Some(token.to_string());
        }
        let url = reqwest::Url::parse(&self.issuer_url)
            .map_err(|e| format!("--issuer-url {}: {e}", self.issuer_url))?;
        let host = url.host_str().unwrap_or_default();
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback && self.feed_token.is_none() {
            return Err(format!(
                "--issuer-url {} is not on loopback, so the revocation feed needs its token: \
                 set SIDECAR_FEED_TOKEN or SIDECAR_FEED_TOKEN_FILE to the issuer's ISSUER_FEED_TOKEN",
                self.issuer_url
            ));
        }
        if !loopback && url.scheme() != "https" && !self.allow_plaintext_issuer {
            return Err(format!(
                "--issuer-url {} is plain http beyond loopback: anyone on the path could serve \
                 their own keys; use https:// (or --allow-plaintext-issuer behind mTLS)",
                self.issuer_url
            ));
        }
        if self.issuer_ca_file.is_some() && url.scheme() != "https" {
            return Err("--issuer-ca-file needs an https:// --issuer-url".into());
        }
        Ok(())
    }

    /// Defaults plus the given policy file and issuer (for tests). The
    /// environment is ignored, so a developer's `SIDECAR_*` variables cannot
    /// change what tests run against.
    /// Settings from arguments alone, as `sidecar serve` takes them but
    /// without environment fallbacks (the Envoy module gets its arguments
    /// in its filter config, and only there). Validated.
    pub fn from_args(args: &[String]) -> Result<Settings, String> {
        use clap::{CommandFactory, FromArgMatches};
        let command =
            Cli::command().mut_subcommand("serve", |c| c.mut_args(|a| a.env(None::<&str>)));
        let argv = ["sidecar", "serve"]
            .into_iter()
            .map(str::to_string)
            .chain(args.iter().cloned());
        let matches = command
            .try_get_matches_from(argv)
            .map_err(|e| e.to_string().trim().to_string())?;
        match Cli::from_arg_matches(&matches).map_err(|e| e.to_string())? {
            Cli {
                command: Command::Serve(mut s),
            } => {
                s.validate()?;
                Ok(*s)
            }
            Cli { .. } => Err("expected serve settings".into()),
        }
    }

    pub fn for_tests(issuer_url: &str, policy: PathBuf) -> Settings {
        use clap::{CommandFactory, FromArgMatches};
        let command =
            Cli::command().mut_subcommand("serve", |c| c.mut_args(|a| a.env(None::<&str>)));
        let parsed = command
            .try_get_matches_from(["sidecar", "serve", "--policy", "p"])
            .and_then(|m| Cli::from_arg_matches(&m));
        let mut s = match parsed {
            Ok(Cli {
                command: Command::Serve(s),
            }) => *s,
            Ok(_) => panic!("parsed the serve subcommand"),
            Err(e) => panic!("built-in defaults must parse: {e}"),
        };
        s.issuer_url = issuer_url.to_string();
        s.policy = policy;
        s.listen = ([127, 0, 0, 1], 0).into();
        s.admin_listen = ([127, 0, 0, 1], 0).into();
        s
    }
}

fn parse_http_url(s: &str) -> Result<String, String> {
    let ok = (s.starts_with("http://") || s.starts_with("https://")) && !s.ends_with('/');
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected an http(s):// URL without a trailing slash".into())
    }
}
