//! DPoP (RFC 9449): `login --dpop` makes a P-256 key kept with the
//! credentials (0600), proves it at the token endpoint so the tokens are
//! bound to it, and signs a fresh proof for every later request: a copy of
//! the token that leaks (a log, a shell history) is useless without it.

use anyhow::{anyhow, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// A new key, as the PKCS#8 document the credentials keep (base64url).
pub fn new_key() -> Result<String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow!("no key could be made"))?;
    Ok(URL_SAFE_NO_PAD.encode(pkcs8.as_ref()))
}

/// A proof for `method` `url` (and `access_token`'s hash, `ath`).
pub fn proof(key: &str, method: &str, url: &str, access_token: Option<&str>) -> Result<String> {
    let rng = SystemRandom::new();
    let pkcs8 = URL_SAFE_NO_PAD
        .decode(key)
        .map_err(|_| anyhow!("the stored DPoP key is damaged: sign in again"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
        .map_err(|_| anyhow!("the stored DPoP key is damaged: sign in again"))?;
    // An uncompressed point: 0x04, x, y.
    let point = pair.public_key().as_ref();
    let (x, y) = point
        .get(1..33)
        .zip(point.get(33..65))
        .ok_or_else(|| anyhow!("unexpected public key"))?;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let header = serde_json::json!({
        "typ": "dpop+jwt",
        "alg": "ES256",
        "jwk": {"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)},
    });
    let mut jti = [0u8; 16];
    rng.fill(&mut jti).map_err(|_| anyhow!("no randomness"))?;
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = serde_json::json!({"jti": b64(&jti), "htm": method, "htu": url, "iat": iat});
    if let Some(token) = access_token {
        let hash = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        claims["ath"] = b64(hash.as_ref()).into();
    }
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = pair
        .sign(&rng, input.as_bytes())
        .map_err(|_| anyhow!("signing the proof failed"))?;
    Ok(format!("{input}.{}", b64(sig.as_ref())))
}
