#![forbid(unsafe_code)]

use std::sync::Arc;

use issuer::config::{parse_cli, Command};
use issuer::domain::clock::{Clock, SystemClock};
use telemetry::cli::init_logging;

#[tokio::main]
async fn main() {
    let cli = parse_cli();
    let log_json = matches!(&cli.command, Command::Serve(a) if a.log_format == "json");
    init_logging(log_json);
    let result = match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(db) => issuer::cli::migrate(&db).await,
        Command::Openapi => issuer::cli::openapi(),
        Command::Users(command) => issuer::cli::users(&command).await,
        Command::Keys(command) => issuer::cli::keys(&command).await,
        Command::Roles(command) => issuer::cli::roles(&command).await,
        Command::Teams(command) => issuer::cli::teams(&command).await,
        Command::Clients(command) => issuer::cli::clients(&command).await,
    };
    if let Err(e) = result {
        eprintln!("issuer: {e:#}");
        std::process::exit(1);
    }
}

async fn serve(args: issuer::config::ServeArgs) -> anyhow::Result<()> {
    let listen = args.listen;
    if args.feed_token.is_none() && args.feed_token_file.is_none() && !listen.ip().is_loopback() {
        issuer::config::exit_usage(&format!(
            "--listen {listen} is not loopback-only, so the revocation feed needs a token: \
             set ISSUER_FEED_TOKEN or ISSUER_FEED_TOKEN_FILE (e.g. openssl rand -hex 32) here and on every sidecar"
        ));
    }
    for warning in args.warnings() {
        tracing::warn!("{warning}");
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let issuer = issuer::build(args, clock).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "issuer listening");
    issuer.serve(listener, issuer::shutdown_signal()).await?;
    Ok(())
}
