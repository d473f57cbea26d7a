//! The subcommands' arguments: users, roles, teams, keys, and the
//! database and key-encryption settings they share with `serve`.

use std::path::PathBuf;

use auth_types::SigningAlg;
use clap::{Args, Subcommand};

use super::*;

/// Who a command is about: a user id, or an email address.
#[derive(Debug, Args)]
pub struct UserRef {
    #[command(flatten)]
    pub db: DbArgs,
    /// User id, or email address.
    #[arg(long, allow_hyphen_values = true)]
    pub user: String,
}

#[derive(Debug, Args)]
pub struct ListUsersArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Substring of the email, name or a linked GitHub login.
    #[arg(long)]
    pub query: Option<String>,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct SetRolesArgs {
    #[command(flatten)]
    pub user: UserRef,
    /// Comma-separated; empty for none.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub roles: Vec<String>,
    /// The issuer's `--mfa-required-roles`: granting one of them ends the
    /// user's one-factor sessions.
    #[arg(long, env = "ISSUER_MFA_REQUIRED_ROLES", value_delimiter = ',')]
    pub mfa_required_roles: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// Every defined role with its permissions, and the map's version.
    List(DbOnly),
    /// Define a role, or replace its permissions.
    Set(SetRoleArgs),
    /// Remove a role's definition and grants.
    Delete(NamedRole),
}

#[derive(Debug, Args)]
pub struct DbOnly {
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct SetRoleArgs {
    #[command(flatten)]
    pub db: DbArgs,
    pub role: String,
    /// Comma-separated; empty for none.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub permissions: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct NamedRole {
    #[command(flatten)]
    pub db: DbArgs,
    pub role: String,
}

#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    List(DbOnly),
    /// Create a team, with its first owner if given.
    Create(CreateTeamArgs),
    /// Delete a team; its members' tokens are refused from now on.
    Delete(NamedTeam),
    /// The team's members and their roles.
    Members(NamedTeam),
    /// Add a member or change their role (owner, maintainer, member).
    SetMember(SetMemberArgs),
    RemoveMember(RemoveMemberArgs),
}

#[derive(Debug, Args)]
pub struct CreateTeamArgs {
    #[command(flatten)]
    pub db: DbArgs,
    pub slug: String,
    #[arg(long)]
    pub name: String,
    /// User id or email of the first owner.
    #[arg(long, allow_hyphen_values = true)]
    pub owner: Option<String>,
}

#[derive(Debug, Args)]
pub struct NamedTeam {
    #[command(flatten)]
    pub db: DbArgs,
    pub slug: String,
}

#[derive(Debug, Args)]
pub struct SetMemberArgs {
    #[command(flatten)]
    pub user: UserRef,
    pub slug: String,
    #[arg(long, value_parser = ["owner", "maintainer", "member"])]
    pub role: String,
}

#[derive(Debug, Args)]
pub struct RemoveMemberArgs {
    #[command(flatten)]
    pub user: UserRef,
    pub slug: String,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List keys with their state and lifecycle times.
    List(KeysArgs),
    /// Publish a new key that starts signing after the publish lead, or
    /// with --now at once.
    Rotate(RotateArgs),
    /// Emergency: pull a compromised key from the JWKS now; if it was
    /// signing, a fresh key takes over at once.
    Revoke(RevokeKeyArgs),
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Tell running replicas at once (otherwise they notice within --key-reload-secs).
    #[arg(long, env = "ISSUER_REDIS_URL")]
    pub redis_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub common: KeysArgs,
    /// Algorithm of the new key (an algorithm change is a rotation).
    #[arg(long, value_parser = parse_alg)]
    pub alg: Option<SigningAlg>,
    /// Sign with the new key immediately instead of after the publish lead.
    #[arg(long)]
    pub now: bool,
}

#[derive(Debug, Args)]
pub struct RevokeKeyArgs {
    #[command(flatten)]
    pub common: KeysArgs,
    /// Key ids made before ids began with a letter may start with `-`.
    #[arg(allow_hyphen_values = true)]
    pub kid: String,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user (the first admin, typically). The password is read from
    /// ISSUER_NEW_USER_PASSWORD, or generated and printed.
    Create(CreateUserArgs),
    /// List users, optionally matching --query.
    List(ListUsersArgs),
    /// Show one user.
    Show(UserRef),
    /// Disable: every session ends and every token is refused.
    Disable(UserRef),
    Enable(UserRef),
    /// Delete the account and everything it had.
    Delete(UserRef),
    /// End every session of the user.
    LogoutAll(UserRef),
    /// Replace the user's global roles (their tokens are refused at once).
    SetRoles(SetRolesArgs),
}

#[derive(Debug, Args)]
pub struct CreateUserArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub name: Option<String>,
    /// Give the user the `admin` role.
    #[arg(long)]
    pub admin: bool,
    #[arg(long, env = "ISSUER_NEW_USER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// sqlite://PATH (embedded default) or postgres://…
    #[arg(long, env = "ISSUER_DATABASE_URL", default_value = "sqlite://data/issuer.db", value_parser = parse_database_url)]
    pub database_url: String,
    /// Maximum pooled database connections.
    #[arg(long, env = "ISSUER_DATABASE_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
}

/// Signing keys and their lifecycle; shared by `serve` and `keys`.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// File holding the key-encryption key (32 random bytes, base64). Generated
    /// on first start with the embedded SQLite default; required with PostgreSQL.
    #[arg(long, env = "ISSUER_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// Algorithm of newly generated signing keys.
    #[arg(long, env = "ISSUER_SIGNING_ALG", default_value = "ES256", value_parser = parse_alg)]
    pub signing_alg: SigningAlg,
    /// Access-token lifetime in seconds.
    #[arg(long, env = "ISSUER_ACCESS_TOKEN_TTL", default_value_t = 900, value_parser = clap::value_parser!(i64).range(10..=86_400))]
    pub access_token_ttl: i64,
    /// Rotate the signing key when it is this old, in seconds (0: only by hand).
    #[arg(long, env = "ISSUER_KEY_ROTATION_SECS", default_value_t = 30 * 86_400, value_parser = clap::value_parser!(i64).range(0..=10 * 365 * 86_400))]
    pub key_rotation_secs: i64,
    /// A new key is published this long before it signs; keep it above the
    /// sidecars' JWKS refresh interval (60 s by default).
    #[arg(long, env = "ISSUER_KEY_PUBLISH_LEAD_SECS", default_value_t = 300, value_parser = clap::value_parser!(i64).range(0..=30 * 86_400))]
    pub key_publish_lead_secs: i64,
    /// A retired key stays published for the access-token lifetime plus this.
    #[arg(long, env = "ISSUER_KEY_REMOVAL_LEEWAY_SECS", default_value_t = 60, value_parser = clap::value_parser!(i64).range(0..=86_400))]
    pub key_removal_leeway_secs: i64,
}

impl KeyArgs {
    pub fn lifecycle(&self) -> crate::domain::rotation::Lifecycle {
        crate::domain::rotation::Lifecycle {
            rotation_period: self.key_rotation_secs,
            publish_lead: self.key_publish_lead_secs,
            retired_keep: self.access_token_ttl + self.key_removal_leeway_secs,
            alg: self.signing_alg,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    List(DbOnly),
    /// Register an OAuth client; a confidential one's secret is printed once.
    Add(Box<AddClientArgs>),
    /// Change a client's description (the whole of it); sessions holding a scope or resource it lost end.
    Update(Box<UpdateClientArgs>),
    /// A new secret (printed once); the old one works a day more, or not at all with --immediate.
    RotateSecret(ClientSecretArgs),
    /// Replace a private_key_jwt client's public keys.
    SetKeys(ClientKeysArgs),
    /// Delete a client; every session opened for it ends.
    Delete(NamedClient),
}

#[derive(Debug, Args)]
pub struct AddClientArgs {
    #[command(flatten)]
    pub db: DbArgs,
    pub client_id: String,
    /// A public client (native or browser app: PKCE, no secret).
    #[arg(long)]
    pub public: bool,
    /// private_key_jwt: the client's public keys (a JWK Set file); no secret is made.
    #[arg(long, value_name = "FILE", conflicts_with = "public")]
    pub jwks_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub description: ClientDescription,
}

#[derive(Debug, Args)]
pub struct UpdateClientArgs {
    #[command(flatten)]
    pub db: DbArgs,
    pub client_id: String,
    #[command(flatten)]
    pub description: ClientDescription,
}

/// What `add` and `update` describe (the whole of it: `update` replaces).
#[derive(Debug, Args)]
pub struct ClientDescription {
    #[arg(long)]
    pub name: String,
    /// Exact redirect URI (repeat for more; the authorization_code grant needs one).
    #[arg(long = "redirect-uri")]
    pub redirect_uri: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uri: Vec<String>,
    /// A scope it may ask for (repeat for more).
    #[arg(long = "scope")]
    pub scope: Vec<String>,
    /// Trusted: users are not asked to consent.
    #[arg(long)]
    pub first_party: bool,
    /// Back-channel logout: logout tokens are posted here when its sessions end.
    #[arg(long, value_name = "URI")]
    pub backchannel_logout_uri: Option<String>,
    /// A resource (RFC 8707) it may ask tokens for (repeat for more).
    #[arg(long = "audience", value_name = "URI")]
    pub audience: Vec<String>,
    /// Token exchange: a client whose users' tokens it may trade (repeat for more; the issuer's own sign-in is its --client-id, devmentor-auth by default).
    #[arg(long = "subject-client", value_name = "CLIENT_ID")]
    pub subject_client: Vec<String>,
    /// A resource it serves: it may introspect tokens for it (repeat for more).
    #[arg(long = "serves", value_name = "URI")]
    pub serves: Vec<String>,
    /// A grant it may use: authorization_code, refresh_token, client_credentials, urn:ietf:params:oauth:grant-type:token-exchange (repeat; left out: the first two when added, as they were when updated).
    #[arg(long = "grant-type", value_name = "GRANT")]
    pub grant_type: Vec<String>,
    /// Its access tokens' lifetime in seconds (never longer than the issuer's; left out of an update: as it was).
    #[arg(long, value_name = "SECS")]
    pub access_token_ttl: Option<i64>,
    /// Its sessions' lifetime in seconds: refresh tokens stop after it (left out of an update: as it was).
    #[arg(long, value_name = "SECS")]
    pub refresh_token_ttl: Option<i64>,
}

#[derive(Debug, Args)]
pub struct ClientKeysArgs {
    #[command(flatten)]
    pub db: DbArgs,
    pub client_id: String,
    /// The new JWK Set (list old and new keys to roll over, then the new alone).
    #[arg(long, value_name = "FILE")]
    pub jwks_file: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct ClientSecretArgs {
    #[command(flatten)]
    pub db: DbArgs,
    pub client_id: String,
    /// The old secret stops at once (it leaked).
    #[arg(long)]
    pub immediate: bool,
}

#[derive(Debug, Args)]
pub struct NamedClient {
    #[command(flatten)]
    pub db: DbArgs,
    pub client_id: String,
}
