//! `fake-github --config users.yaml --port 3999`: the fake for the demo.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    about = "A fake GitHub (OAuth app flow and the REST calls the issuer makes). Not GitHub."
)]
struct Args {
    /// YAML: client_id, client_secret, redirect_uri, users.
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value_t = 3999)]
    port: u16,
    /// Approve as this login without showing the account picker.
    #[arg(long)]
    signed_in: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config)?;
    let config: fake_github::Config = yaml_serde::from_str(&text)?;
    let (router, shared) = fake_github::router(config);
    if let Some(login) = args.signed_in {
        shared.set(fake_github::Behaviour {
            signed_in: Some(login),
            ..Default::default()
        });
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    eprintln!(
        "fake GitHub (not GitHub) on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, router).await?;
    Ok(())
}
