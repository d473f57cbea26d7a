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
    let now = state.now().secs();
    let url = format!("{}/auth/oauth2/token", state.settings.issuer_url);
    let expected = Expected {
        method: "POST",
        url: &url,
        access_token: None,
        now,
    };
    let proof = dpop::verify(proof, &expected).map_err(|e| invalid_proof(e.to_string()))?;
    let key = format!("dpop:{}", proof.jkt);
    let expires_at = now + MAX_AGE_SECS + MAX_SKEW_SECS;
    if !state
        .store
        .use_assertion_id(&key, &proof.jti, expires_at)
        .await?
    {
        return Err(invalid_proof("this proof was used before (its jti)"));
    }
    let mut proved = client.clone();
    proved.dpop_jkt = Some(proof.jkt);
    Ok(proved)
}
