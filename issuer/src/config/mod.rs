//! Command line and environment configuration.
//!
//! Precedence: command-line flag > environment variable > `--config` file >
//! built-in default. A bad value exits with status 64 and one line naming the
//! setting.

pub use crate::domain::ratelimit::RateSetting;
use clap::{Parser, Subcommand};

mod commands;
mod file;
mod serve;

pub use commands::*;
use file::fold_config_file;
pub use serve::*;

#[derive(Debug, Parser)]
#[command(name = "issuer", version, about = "DevMentor Auth issuer")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (what /openapi.json serves).
    Openapi,
    /// Manage user accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage signing keys (works while servers run).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage roles and the permissions they grant (works while servers run).
    #[command(subcommand)]
    Roles(RolesCommand),
    /// Manage teams and memberships (works while servers run).
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// Manage OAuth / OpenID Connect clients (works while servers run).
    #[command(subcommand)]
    Clients(ClientsCommand),
}

/// Parses the command line, first folding in `--config FILE` (YAML map of
/// setting name → value) for settings neither the command line nor the
/// environment gave. Exits 64 with one line on a bad setting.
pub fn parse_cli() -> Cli {
    let args: Vec<String> = std::env::args().collect();
    match fold_config_file(args) {
        Ok(args) => telemetry::cli::parse_cli("issuer", args),
        Err(e) => exit_usage(&e),
    }
}

pub fn exit_usage(message: &str) -> ! {
    telemetry::cli::exit_usage("issuer", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth_types::SigningAlg;

    #[test]
    fn defaults_parse_and_bad_values_name_the_setting() {
        let args = ServeArgs::with_database("sqlite::memory:");
        assert_eq!(args.keys.access_token_ttl, 900);
        assert_eq!(args.argon2_memory_kib, 19_456);
        assert_eq!(args.keys.signing_alg, SigningAlg::ES256);

        let err = Cli::try_parse_from(["issuer", "serve", "--access-token-ttl", "abc"])
            .expect_err("bad ttl");
        assert!(err.to_string().contains("--access-token-ttl"), "{err}");
        let err = Cli::try_parse_from(["issuer", "serve", "--signing-alg", "HS256"])
            .expect_err("bad alg");
        assert!(err.to_string().contains("--signing-alg"), "{err}");
        let err = Cli::try_parse_from(["issuer", "serve", "--database-url", "mysql://x"])
            .expect_err("bad url");
        assert!(err.to_string().contains("--database-url"), "{err}");
    }
}
