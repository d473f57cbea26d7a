//! DPoP (RFC 9449) at the token endpoint: a client that sends a proof gets
//! tokens bound to its key (`cnf.jkt`, `token_type: DPoP`), and a session
//! so bound refreshes only with a proof signed by the same key. The proof's
//! `jti` is taken once per key, on every replica (the assertion-id table
//! `private_key_jwt` uses).

use auth_types::dpop::{self, Expected, MAX_AGE_SECS, MAX_SKEW_SECS};

use crate::service::context::Client;
use crate::service::error::{Error, Result};
use crate::AppState;

pub fn invalid_proof(message: impl Into<String>) -> Error {
    Error::bad_request("invalid_dpop_proof", message)
}

/// `client` with the key its proof (the `DPoP` header) proved, if it sent
/// one; a bad or replayed proof is refused.
pub async fn prove(state: &AppState, client: &Client, proof: Option<&str>) -> Result<Client> {
    let Some(proof) = proof else {
        return Ok(client.clone());
    };
    let jkt = check(state, proof, "POST", "/auth/oauth2/token", None).await?;
    let mut proved = client.clone();
    proved.dpop_jkt = Some(jkt);
    Ok(proved)
}

/// A proof for a request to the issuer's `path` (with `method`, for the
/// access token if one is presented), taken once: its key's thumbprint.
pub async fn check(
    state: &AppState,
    proof: &str,
    method: &str,
    path: &str,
    access_token: Option<&str>,
) -> Result<String> {
    let now = state.now().secs();
    let url = format!("{}{path}", state.settings.issuer_url);
    let expected = Expected {
        method,
        url: &url,
        access_token,
        now,
    };
    let proof = dpop::verify(proof, &expected).map_err(|e| invalid_proof(e.to_string()))?;
    // Beside private_key_jwt's assertion ids, under a prefix no client id
    // can take (client ids have no ':').
    let key = format!("dpop:{}", proof.jkt);
    let expires_at = now + MAX_AGE_SECS + MAX_SKEW_SECS;
    if !state
        .store
        .use_assertion_id(&key, &proof.jti, expires_at)
        .await?
    {
        return Err(invalid_proof("this proof was used before (its jti)"));
    }
    Ok(proof.jkt)
}
