//! Access tokens (signed JWTs) and opaque refresh tokens.

use auth_types::jws::b64url_encode;
use auth_types::{AccessClaims, ACCESS_TOKEN_TYP};
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;

use crate::domain::keys::SigningKey;

/// `header.payload.signature`, with `typ: at+jwt` and the key's `kid` and `alg`.
pub fn mint_access_token(key: &SigningKey, claims: &AccessClaims) -> anyhow::Result<String> {
    let header = json!({"alg": key.alg.as_str(), "typ": ACCESS_TOKEN_TYP, "kid": key.kid});
    let mut token = b64url_encode(&serde_json::to_vec(&header)?);
    token.push('.');
    token.push_str(&b64url_encode(&serde_json::to_vec(claims)?));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64url_encode(&signature));
    Ok(token)
}

/// 256 random bits, URL-safe. Only its hash is ever stored.
pub fn new_refresh_token() -> anyhow::Result<String> {
    Ok(format!("rt_{}", random_b64(32)?))
}

pub fn random_b64(len: usize) -> anyhow::Result<String> {
    Ok(b64url_encode(&random_bytes(len)?))
}

pub fn random_bytes(len: usize) -> anyhow::Result<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(bytes)
}

/// SHA-256 suffices: the input is 256 random bits, not a guessable password.
pub fn refresh_token_hash(token: &str) -> String {
    b64url_encode(digest(&SHA256, token.as_bytes()).as_ref())
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
