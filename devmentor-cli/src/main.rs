//! `devmentor`: sign in to DevMentor Auth from a terminal, where no browser
//! can reach a localhost callback (over SSH, say), by the device
//! authorization grant (RFC 8628); then hand scripts a fresh access token.
//!
//! ```sh
//! devmentor login --issuer https://auth.example    # prints a URL and a code
//! curl -H "Authorization: Bearer $(devmentor token)" https://mesh.example/memory/notes/
//! devmentor whoami
//! devmentor logout                                  # revokes the session
//! DEVMENTOR_PAT=dmp_… devmentor pat-token            # CI: a personal access token's access token
//! devmentor login --dpop                            # tokens bound to a key kept here (RFC 9449)
//! curl -H "Authorization: DPoP $(devmentor token)" -H "DPoP: $(devmentor proof GET $URL)" "$URL"
//! ```

mod credentials;
mod dpop;
mod oauth;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "devmentor",
    version,
    about = "Sign in to DevMentor Auth from a terminal"
)]
struct Cli {
    /// Where the signed-in state is kept (0600); default
    /// `$XDG_CONFIG_HOME/devmentor/credentials.json`.
    #[arg(long, env = "DEVMENTOR_CREDENTIALS", global = true)]
    credentials: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign in by device code: open the printed URL anywhere, enter the code.
    Login {
        /// The issuer's URL (its `iss`).
        #[arg(
            long,
            env = "DEVMENTOR_ISSUER",
            default_value = "http://localhost:3002"
        )]
        issuer: String,
        /// This CLI's client id, as registered with the issuer.
        #[arg(long, env = "DEVMENTOR_CLIENT_ID", default_value = "devmentor-cli")]
        client_id: String,
        /// A scope to ask for (repeat; left out: all the client may ask for).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Also print the URL as a QR code, for a phone.
        #[arg(long)]
        qr: bool,
        /// Bind the tokens to a key kept with the credentials (DPoP, RFC
        /// 9449): requests then need `devmentor proof` beside the token.
        #[arg(long)]
        dpop: bool,
    },
    /// Print a valid access token (refreshed when it is about to expire).
    Token,
    /// A DPoP proof for one request with the token (after `login --dpop`):
    /// `-H "Authorization: DPoP $(devmentor token)" -H "DPoP: $(devmentor
    /// proof GET URL)"`.
    Proof {
        /// The request's method (GET, POST, ...).
        method: String,
        /// The request's URL.
        url: String,
    },
    /// Who the token is for (OpenID Connect userinfo).
    Whoami,
    /// End the session at the issuer (RFC 7009) and forget it here.
    Logout,
    /// Print an access token for the personal access token in
    /// `DEVMENTOR_PAT` (CI, scripts): nothing is stored. From the
    /// environment only: arguments show in `ps`.
    PatToken {
        /// The issuer's URL (its `iss`).
        #[arg(
            long,
            env = "DEVMENTOR_ISSUER",
            default_value = "http://localhost:3002"
        )]
        issuer: String,
        /// Fewer scopes than the personal access token holds (repeat).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devmentor: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let path = match cli.credentials {
        Some(p) => p,
        None => credentials::default_path()?,
    };
    let http = oauth::http()?;
    if let Command::PatToken { issuer, scopes } = &cli.command {
        let pat = std::env::var("DEVMENTOR_PAT")
            .context("DEVMENTOR_PAT is not set (a personal access token, dmp_…)")?;
        let provider = oauth::discover(&http, issuer).await?;
        println!(
            "{}",
            oauth::exchange_pat(&http, &provider, &pat, scopes).await?
        );
        return Ok(());
    }
    if let Command::Login {
        issuer,
        client_id,
        scopes,
        qr,
        dpop,
    } = &cli.command
    {
        let provider = oauth::discover(&http, issuer).await?;
        let key = if *dpop { Some(dpop::new_key()?) } else { None };
        let creds = oauth::device_login(&http, &provider, client_id, scopes, key, |d| {
            let complete = d.verification_uri_complete().map(|u| u.secret().clone());
            eprintln!("To sign in, open {}", d.verification_uri().as_str());
            eprintln!("and enter the code: {}", d.user_code().secret());
            if let Some(url) = &complete {
                eprintln!("(or open {url})");
                if *qr {
                    if let Ok(code) = qrcode::QrCode::new(url.as_bytes()) {
                        eprintln!(
                            "{}",
                            code.render::<qrcode::render::unicode::Dense1x2>().build()
                        );
                    }
                }
            }
            eprintln!("Waiting for you to approve it...");
        })
        .await?;
        credentials::save(&path, &creds)?;
        eprintln!("Signed in. Credentials in {}", path.display());
        return Ok(());
    }
    let Some(creds) = credentials::load(&path)? else {
        anyhow::bail!("not signed in: run `devmentor login`");
    };
    let provider = oauth::discover(&http, &creds.issuer).await?;
    match cli.command {
        Command::Token => {
            let creds = current(&http, &provider, &path, creds).await?;
            println!("{}", creds.access_token);
        }
        Command::Whoami => {
            let creds = current(&http, &provider, &path, creds).await?;
            let info = oauth::userinfo(&http, &provider, &creds).await?;
            let field = |k: &str| info.get(k).and_then(|v| v.as_str()).map(str::to_string);
            println!("sub: {}", field("sub").unwrap_or_default());
            if let Some(email) = field("email") {
                println!("email: {email}");
            }
            if let Some(name) = field("name") {
                println!("name: {name}");
            }
            println!("client: {}", creds.client_id);
            println!("scope: {}", creds.scope);
        }
        Command::Proof { method, url } => {
            let creds = current(&http, &provider, &path, creds).await?;
            let key = creds
                .dpop_key
                .as_deref()
                .context("these credentials are not DPoP-bound: sign in with `login --dpop`")?;
            let method = method.to_ascii_uppercase();
            println!(
                "{}",
                dpop::proof(key, &method, &url, Some(&creds.access_token))?
            );
        }
        Command::Logout => {
            // Forgotten here whatever the issuer says; a failed revocation
            // is still reported.
            let revoked = oauth::revoke(&http, &provider, &creds).await;
            credentials::remove(&path)?;
            revoked.context("the session may still be live at the issuer")?;
            eprintln!("Signed out.");
        }
        Command::Login { .. } | Command::PatToken { .. } => {}
    }
    Ok(())
}

/// The credentials with an access token that lives 30 s more at least.
async fn current(
    http: &reqwest::Client,
    provider: &oauth::Provider,
    path: &std::path::Path,
    creds: credentials::Credentials,
) -> Result<credentials::Credentials> {
    if oauth::fresh(&creds, 30) {
        return Ok(creds);
    }
    let renewed = oauth::refresh(http, provider, &creds).await?;
    credentials::save(path, &renewed)?;
    Ok(renewed)
}
