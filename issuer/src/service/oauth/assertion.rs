//! `private_key_jwt` (RFC 7523 §2.2 and §3, OpenID Connect Core §9): a
//! confidential client proves itself with a short-lived JWT it signed with
//! a key it registered, so no shared secret exists to leak. Each assertion
//! is good once (its `jti`, remembered in the store until it expires).

use auth_types::jws::{peek_claims, verify_assertion, VerifyingKeySet};
use auth_types::{Audience, JwkSet, VerifyingKey};
use serde::Deserialize;

use crate::service::error::{Error, Kind, Result};
use crate::store::OAuthClient;
use crate::AppState;

/// `client_assertion_type` for a JWT (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far ahead an assertion's `exp` may be. An assertion is made for one
/// request and its `jti` works once, but a long-lived one is a bearer
/// secret until used; an hour is what client libraries default to (Authlib).
const MAX_LIFETIME_SECS: i64 = 3600;
/// Clock difference allowed between the client and us.
const LEEWAY_SECS: i64 = 30;
const MAX_KEYS: usize = 8;
const MAX_JTI_LEN: usize = 256;
/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    iat: i64,
    jti: String,
}

#[derive(Deserialize)]
struct Claimed {
    sub: String,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(Kind::Unprocessable, "invalid_client_metadata", message)
}

/// Checks a registration's `jwks`: 1 to 8 public keys, each with a `kid`
/// and of an algorithm we verify (ES256, EdDSA, RS256 of 2048 bits or
/// more). Returns it as stored: public members only.
pub fn check_jwks(value: &serde_json::Value) -> Result<String> {
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| invalid("jwks: a JWK Set ({\"keys\": [...]})"))?;
    if keys.is_empty() || keys.len() > MAX_KEYS {
        return Err(invalid(format!("jwks: 1 to {MAX_KEYS} keys")));
    }
    if keys
        .iter()
        .any(|k| PRIVATE_MEMBERS.iter().any(|m| k.get(m).is_some()))
    {
        return Err(invalid(
            "jwks: public keys only (a private key was sent: replace it, it is no longer secret)",
        ));
    }
    let set: JwkSet = serde_json::from_value(value.clone())
        .map_err(|e| invalid(format!("jwks: not a JWK Set ({e})")))?;
    let mut kids = std::collections::HashSet::new();
    for jwk in &set.keys {
        VerifyingKey::from_jwk(jwk).map_err(|e| invalid(format!("jwks: {e}")))?;
        if !kids.insert(jwk.kid.as_str()) {
            return Err(invalid(format!("jwks: kid {:?} twice", jwk.kid)));
        }
    }
    let public = JwkSet {
        keys: set.keys,
        version: 0,
    };
    serde_json::to_string(&public).map_err(|e| Error::internal(anyhow::anyhow!(e)))
}

/// Which client an assertion claims to be (`sub`), before anything is
/// verified: only to pick the keys that must verify it.
pub fn claimed_client(assertion: &str) -> Option<String> {
    peek_claims::<Claimed>(assertion).map(|c| c.sub)
}

/// Verifies `assertion` for `client`: signed by one of its keys; `iss` and
/// `sub` the client; `aud` this issuer's identifier and nothing else; made
/// (`iat`) within the last hour and good (`exp`) for at most an hour from
/// then; a `jti` not used before.
///
/// `aud` is the issuer alone, not the token endpoint's URL that RFC 7523
/// and OIDC Core once suggested: a client that takes its token endpoint
/// from another provider's metadata could be made to sign an assertion
/// for ours (audience injection; the rfc7523bis draft and OIDC Core
/// errata 2 require the issuer identifier as the only audience).
pub async fn verify(state: &AppState, client: &OAuthClient, assertion: &str) -> Result<()> {
    let Some(jwks) = client.jwks.as_deref() else {
        return Err(Error::invalid_client(
            "this client authenticates with a secret, not private_key_jwt",
        ));
    };
    let set: JwkSet =
        serde_json::from_str(jwks).map_err(|e| Error::internal(anyhow::anyhow!(e)))?;
    let (keys, _) = VerifyingKeySet::from_jwks(&set);
    let claims: Claims = verify_assertion(assertion, &keys)
        .map_err(|e| Error::invalid_client(&format!("client assertion: {e}")))?;
    if claims.iss != client.id || claims.sub != client.id {
        return Err(Error::invalid_client(
            "client assertion: iss and sub must be the client_id",
        ));
    }
    let issuer = &state.settings.issuer_url;
    let only_issuer = match &claims.aud {
        Audience::One(a) => a == issuer,
        Audience::Many(list) => list.len() == 1 && list[0] == *issuer,
    };
    if !only_issuer {
        return Err(Error::invalid_client(
            "client assertion: aud must be the issuer identifier alone",
        ));
    }
    let now = state.now().secs();
    if claims.exp <= now - LEEWAY_SECS {
        return Err(Error::invalid_client("client assertion: expired"));
    }
    if claims.iat < now - MAX_LIFETIME_SECS - LEEWAY_SECS
        || claims.exp - claims.iat > MAX_LIFETIME_SECS
    {
        return Err(Error::invalid_client(
            "client assertion: made more than an hour ago, or good for longer",
        ));
    }
    if claims.iat > now + LEEWAY_SECS || claims.nbf.is_some_and(|t| t > now + LEEWAY_SECS) {
        return Err(Error::invalid_client("client assertion: not valid yet"));
    }
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(Error::invalid_client(
            "client assertion: jti of 1 to 256 bytes",
        ));
    }
    // Kept past `exp` by the leeway, which still admits it until then.
    let fresh = state
        .store
        .use_assertion_id(&client.id, &claims.jti, claims.exp + LEEWAY_SECS)
        .await?;
    if !fresh {
        return Err(Error::invalid_client(
            "client assertion: already used (jti)",
        ));
    }
    Ok(())
}
