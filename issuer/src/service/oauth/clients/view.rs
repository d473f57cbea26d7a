//! A registered client as the admin API shows it.

use serde::Serialize;

use crate::store::OAuthClient;

/// A registered client as the admin API shows it (never its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub first_party: bool,
    pub created_at: i64,
    /// `client_secret_basic`, `private_key_jwt` or `none`.
    pub token_endpoint_auth_method: &'static str,
    /// The public keys of a `private_key_jwt` client.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    pub audiences: Vec<String>,
    pub subject_clients: Vec<String>,
    pub serves: Vec<String>,
    /// When it last used a service grant (`client_credentials`, workload
    /// identity, token exchange), Unix seconds; written every
    /// `--usage-flush-secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    /// Uses per UTC day, newest first, the last 30 days with any (one
    /// client's view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses_by_day: Option<Vec<DayUses>>,
    pub grant_types: Vec<String>,
    /// Seconds; absent: the issuer's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token_ttl: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_ttl: Option<i64>,
    /// Raised by every change (name it in an update to refuse a lost one).
    pub version: i64,
}

impl From<&OAuthClient> for ClientView {
    fn from(c: &OAuthClient) -> Self {
        ClientView {
            client_id: c.id.clone(),
            name: c.name.clone(),
            kind: if c.confidential() {
                "confidential"
            } else {
                "public"
            },
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_uris.clone(),
            scopes: c.scopes.clone(),
            first_party: c.first_party,
            created_at: c.created_at,
            token_endpoint_auth_method: auth_method(c),
            jwks: c.jwks.as_deref().and_then(|j| serde_json::from_str(j).ok()),
            backchannel_logout_uri: c.backchannel_logout_uri.clone(),
            audiences: c.audiences.clone(),
            subject_clients: c.subject_clients.clone(),
            serves: c.serves.clone(),
            last_used_at: c.last_used_at,
            uses_by_day: None,
            grant_types: c.grant_types.clone(),
            access_token_ttl: c.access_token_ttl,
            refresh_token_ttl: c.refresh_token_ttl,
            version: c.version,
        }
    }
}

/// A day's uses of a service's grants.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DayUses {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub uses: i64,
}

/// A registered client, with its secret shown this once (confidential).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registered {
    #[serde(flatten)]
    pub client: ClientView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

pub(super) fn auth_method(c: &OAuthClient) -> &'static str {
    if c.jwks.is_some() {
        "private_key_jwt"
    } else if c.secret_hash.is_some() {
        "client_secret_basic"
    } else {
        "none"
    }
}
