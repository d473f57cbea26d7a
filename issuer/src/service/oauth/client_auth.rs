//! Client authentication at the token, revocation and introspection
//! endpoints: a secret (basic or post), a `private_key_jwt` assertion, or a
//! public client's id alone.

use super::assertion;
use crate::domain::tokens::refresh_token_hash;
use crate::service::error::{Error, Result};
use crate::store::OAuthClient;
use crate::AppState;

/// How a client authenticated at the token endpoint.
#[derive(Clone, Default)]
pub struct Credentials {
    /// From `Authorization: Basic` (`client_secret_basic`).
    pub basic: Option<(String, String)>,
    /// `client_id` in the body.
    pub client_id: Option<String>,
    /// `client_secret` in the body (`client_secret_post`).
    pub client_secret: Option<String>,
    /// `client_assertion_type` and `client_assertion` (`private_key_jwt`).
    pub assertion_type: Option<String>,
    pub assertion: Option<String>,
}

/// Secrets and assertions are never shown, not even in a debug dump.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("basic", &self.basic.as_ref().map(|(id, _)| id))
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<hidden>"),
            )
            .field("assertion_type", &self.assertion_type)
            .field("assertion", &self.assertion.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// The client the credentials prove: a confidential client by its secret
/// (basic or post, not both), a public one by its id alone. A public
/// client presenting a secret, or a confidential one presenting none, is
/// refused: either is a client that is not what was registered.
pub async fn authenticate(state: &AppState, creds: &Credentials) -> Result<OAuthClient> {
    if creds.assertion_type.is_some() || creds.assertion.is_some() {
        return authenticate_by_assertion(state, creds).await;
    }
    let (id, secret) = match (&creds.basic, &creds.client_secret) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_request(
                "invalid_request",
                "use one client authentication method, not two",
            ))
        }
        (Some((id, secret)), None) => {
            if creds.client_id.as_deref().is_some_and(|b| b != id) {
                return Err(Error::bad_request(
                    "invalid_request",
                    "client_id differs from the authenticated client",
                ));
            }
            (id.clone(), Some(secret.as_str()))
        }
        (None, secret) => match &creds.client_id {
            Some(id) => (id.clone(), secret.as_deref()),
            None => return Err(Error::invalid_client("client authentication is required")),
        },
    };
    let now = state.now().secs();
    let Some(found) = state.store.client(&id).await? else {
        return Err(Error::invalid_client("unknown client"));
    };
    if found.jwks.is_some() {
        return Err(Error::invalid_client(
            "this client authenticates with private_key_jwt",
        ));
    }
    match (&found.secret_hash, secret) {
        (None, None) => Ok(found),
        (None, Some(_)) => Err(Error::invalid_client(
            "a public client authenticates with no secret",
        )),
        (Some(_), None) => Err(Error::invalid_client("this client must authenticate")),
        (Some(current), Some(presented)) => {
            let hash = refresh_token_hash(presented);
            let previous_live = found.previous_expires_at.is_some_and(|t| now < t);
            let ok = same(current, &hash)
                || (previous_live
                    && found
                        .previous_secret_hash
                        .as_deref()
                        .is_some_and(|p| same(p, &hash)));
            if ok {
                Ok(found)
            } else {
                Err(Error::invalid_client("client authentication failed"))
            }
        }
    }
}

/// `private_key_jwt`: the assertion alone (no secret besides it); the
/// client is the one `client_id` names, or else the assertion's `sub`.
async fn authenticate_by_assertion(state: &AppState, creds: &Credentials) -> Result<OAuthClient> {
    if creds.basic.is_some() || creds.client_secret.is_some() {
        return Err(Error::bad_request(
            "invalid_request",
            "use one client authentication method, not two",
        ));
    }
    let (Some(kind), Some(assertion)) = (&creds.assertion_type, &creds.assertion) else {
        return Err(Error::bad_request(
            "invalid_request",
            "client_assertion_type and client_assertion go together",
        ));
    };
    if kind != assertion::ASSERTION_TYPE {
        return Err(Error::bad_request(
            "invalid_request",
            format!(
                "client_assertion_type must be {}",
                assertion::ASSERTION_TYPE
            ),
        ));
    }
    let claimed = assertion::claimed_client(assertion)
        .ok_or_else(|| Error::invalid_client("client assertion: malformed"))?;
    if creds.client_id.as_deref().is_some_and(|id| id != claimed) {
        return Err(Error::invalid_client(
            "client assertion: sub differs from client_id",
        ));
    }
    let Some(found) = state.store.client(&claimed).await? else {
        return Err(Error::invalid_client("unknown client"));
    };
    assertion::verify(state, &found, assertion).await?;
    Ok(found)
}

/// Compares two hashes without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
