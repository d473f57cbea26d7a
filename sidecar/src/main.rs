#![forbid(unsafe_code)]

use sidecar::config::{Cli, Command};
use telemetry::cli::{init_logging, parse_cli};

fn exit_usage(message: &str) -> ! {
    telemetry::cli::exit_usage("sidecar", message)
}

#[tokio::main]
async fn main() {
    let cli: Cli = parse_cli("sidecar", std::env::args().collect());
    let mut settings = match cli.command {
        Command::Serve(settings) => settings,
        Command::CheckPolicy { file } => check_policy(&file),
    };
    if let Err(e) = settings.validate() {
        exit_usage(&e);
    }
    init_logging(settings.log_format == "json");
    if let Err(e) = run(*settings).await {
        eprintln!("sidecar: {e:#}");
        std::process::exit(1);
    }
}

fn check_policy(file: &std::path::Path) -> ! {
    match sidecar::policy::Policy::load(file) {
        Ok(policy) => {
            println!("{}: valid, {} rules", file.display(), policy.rules.len());
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("sidecar: {e}");
            // EX_DATAERR: the input, not the invocation, is wrong.
            std::process::exit(65)
        }
    }
}

async fn run(settings: sidecar::config::Settings) -> anyhow::Result<()> {
    let grpc = tokio::net::TcpListener::bind(settings.listen).await?;
    let admin = tokio::net::TcpListener::bind(settings.admin_listen).await?;
    let sidecar = match sidecar::start(settings).await {
        Ok(s) => s,
        // A bad policy is a configuration error like a bad flag.
        Err(e) if e.downcast_ref::<sidecar::policy::PolicyError>().is_some() => {
            exit_usage(&format!("--policy: {e}"))
        }
        Err(e) => return Err(e),
    };
    tracing::info!(grpc = %grpc.local_addr()?, admin = %admin.local_addr()?, "sidecar listening");
    sidecar.serve(grpc, admin, shutdown_signal()).await
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
