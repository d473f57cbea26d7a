//! The token endpoint's form and answer.

use serde::{Deserialize, Serialize};

use crate::service::error::Error;
use crate::service::grant::Tokens;

/// The token endpoint's form.
#[derive(Debug, Default, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    /// RFC 8707.
    pub resource: Option<String>,
    /// Token exchange (RFC 8693).
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub actor_token: Option<String>,
    pub audience: Option<String>,
    pub requested_token_type: Option<String>,
    /// The device authorization grant (RFC 8628).
    pub device_code: Option<String>,
    /// The JWT bearer grant (RFC 7523): a workload's cluster token.
    pub assertion: Option<String>,
    /// The `DPoP` header's proof (RFC 9449), not a form field.
    #[serde(skip)]
    pub dpop: Option<String>,
}

/// RFC 6749 §5.1, with OIDC's `id_token`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OAuthTokenResponse)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Token exchange (RFC 8693 §2.2.1): what `access_token` holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

impl TokenResponse {
    /// A service's answer (as itself, or for a user): an access token
    /// alone, no refresh or ID token (it asks again).
    pub(super) fn for_service(tokens: Tokens, scope: String, issued: Option<&'static str>) -> Self {
        TokenResponse {
            access_token: tokens.access_token,
            token_type: "Bearer",
            expires_in: tokens.expires_in,
            refresh_token: None,
            scope,
            id_token: None,
            issued_token_type: issued,
        }
    }
}

pub(super) fn invalid_grant(message: &str) -> Error {
    Error::bad_request("invalid_grant", message)
}

pub(super) fn invalid_target(message: &str) -> Error {
    Error::bad_request("invalid_target", message)
}
