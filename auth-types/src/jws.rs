//! Strict compact-JWS verification for access tokens (RFC 8725).
//!
//! - The algorithm comes from the key (looked up by `kid`), never from the
//!   token: a header `alg` that differs from the key's is refused.
//! - `none` and HMAC algorithms are refused outright.
//! - `jwk`, `jku`, `x5u` and `x5c` headers are never read as key sources.
//! - Any `crit` header is refused: we implement no critical extensions.
//! - Oversized tokens are refused before any decoding.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

use crate::claims::AccessClaims;
use crate::jwk::{Jwk, JwkSet, SigningAlg};

/// Tokens longer than this are refused without decoding (8 KiB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm")]
    UnsupportedAlg,
    #[error("unsupported critical header")]
    UnsupportedCritical,
    #[error("wrong token type")]
    WrongType,
    #[error("token names no key")]
    MissingKid,
    #[error("unknown signing key")]
    UnknownKid(String),
    #[error("algorithm does not match the key")]
    AlgMismatch,
    #[error("bad signature")]
    BadSignature,
    #[error("malformed claims")]
    BadClaims,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    /// Present at all (even `null`) means refused.
    #[serde(default, deserialize_with = "present")]
    crit: Option<serde_json::Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

pub fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// A parsed public key with the one algorithm it may be used with.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    pub kid: String,
    pub alg: SigningAlg,
    material: KeyMaterial,
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    Ec(Vec<u8>),
    Ed(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable JWK {kid}: {reason}")]
pub struct JwkError {
    pub kid: String,
    pub reason: &'static str,
}

impl VerifyingKey {
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JwkError> {
        let fail = |reason| JwkError {
            kid: jwk.kid.clone(),
            reason,
        };
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(fail("key is not for signatures"));
        }
        let field = |v: &Option<String>, name: &'static str| {
            v.as_deref()
                .and_then(b64url_decode)
                .ok_or_else(|| fail(name))
        };
        let (alg, material) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some("P-256")) => {
                let x = field(&jwk.x, "bad x coordinate")?;
                let y = field(&jwk.y, "bad y coordinate")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(fail("bad P-256 coordinates"));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (SigningAlg::ES256, KeyMaterial::Ec(point))
            }
            ("OKP", Some("Ed25519")) => {
                let x = field(&jwk.x, "bad Ed25519 key")?;
                if x.len() != 32 {
                    return Err(fail("bad Ed25519 key length"));
                }
                (SigningAlg::EdDSA, KeyMaterial::Ed(x))
            }
            ("RSA", _) => {
                let n = field(&jwk.n, "bad RSA modulus")?;
                let e = field(&jwk.e, "bad RSA exponent")?;
                if n.len() < 256 {
                    return Err(fail("RSA modulus shorter than 2048 bits"));
                }
                // ring verifies 2048 to 8192 bits; a minimal integer has no
                // leading zero byte (RFC 7518 §6.3.1).
                if n.len() > 1024 || n.first() == Some(&0) || e.is_empty() || e.first() == Some(&0)
                {
                    return Err(fail("RSA key outside 2048 to 8192 bits, or not minimal"));
                }
                (SigningAlg::RS256, KeyMaterial::Rsa { n, e })
            }
            _ => return Err(fail("unsupported key type")),
        };
        if let Some(declared) = jwk.alg.as_deref() {
            if declared != alg.as_str() {
                return Err(fail("alg does not match key type"));
            }
        }
        Ok(VerifyingKey {
            kid: jwk.kid.clone(),
            alg,
            material,
        })
    }

    pub fn verify_signature(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Ec(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            KeyMaterial::Ed(key) => UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(message, sig)
                .is_ok(),
            KeyMaterial::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
        }
    }
}

/// Keys by `kid`.
#[derive(Debug, Clone, Default)]
pub struct VerifyingKeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl VerifyingKeySet {
    /// Builds the set from a JWKS, skipping keys we cannot use (and saying which).
    pub fn from_jwks(set: &JwkSet) -> (Self, Vec<JwkError>) {
        let mut keys = HashMap::new();
        let mut skipped = Vec::new();
        for jwk in &set.keys {
            match VerifyingKey::from_jwk(jwk) {
                Ok(k) => {
                    keys.insert(k.kid.clone(), k);
                }
                Err(e) => skipped.push(e),
            }
        }
        (VerifyingKeySet { keys }, skipped)
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub claims: AccessClaims,
    pub kid: String,
    pub alg: SigningAlg,
}

/// Checks structure, header rules and signature, then decodes the claims.
/// Time, issuer and audience are checked separately by `AccessClaims::validate`.
pub fn verify(token: &str, keys: &VerifyingKeySet) -> Result<VerifiedToken, JwsError> {
    let (payload, kid, alg) = verify_signed(token, keys, is_access_token_typ)?;
    let claims: AccessClaims = serde_json::from_slice(&payload).map_err(|_| JwsError::BadClaims)?;
    Ok(VerifiedToken { claims, kid, alg })
}

/// What the issuer reads from an ID token it signed (`id_token_hint` of
/// RP-initiated logout): who, for which client, in which session. Its
/// expiry is not checked: a hint may be presented after it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct IdTokenHint {
    pub iss: String,
    pub sub: String,
    pub aud: crate::Audience,
    #[serde(default)]
    pub sid: Option<String>,
}

/// An ID token's signature and header (`typ: JWT`), then its claims.
pub fn verify_id_token(token: &str, keys: &VerifyingKeySet) -> Result<IdTokenHint, JwsError> {
    let (payload, _, _) = verify_signed(token, keys, |typ| {
        typ.is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
    })?;
    serde_json::from_slice(&payload).map_err(|_| JwsError::BadClaims)
}

/// A JWT a party signed with its own registered key (an RFC 7523 client
/// assertion or bearer grant), its claims as `T`. Any `typ` but an access
/// token's, so a token of ours can never stand in for one; a `kid` is
/// required, as ever.
pub fn verify_assertion<T: serde::de::DeserializeOwned>(
    token: &str,
    keys: &VerifyingKeySet,
) -> Result<T, JwsError> {
    let (payload, _, _) = verify_signed(token, keys, |typ| !is_access_token_typ(typ))?;
    serde_json::from_slice(&payload).map_err(|_| JwsError::BadClaims)
}

/// The payload of a JWT, not verified: only to find which key set should
/// verify it (the client an assertion claims to be).
pub fn peek_claims<T: serde::de::DeserializeOwned>(token: &str) -> Option<T> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let p64 = token.split('.').nth(1)?;
    serde_json::from_slice(&b64url_decode(p64)?).ok()
}

/// Structure, header rules (`typ` as `typ_ok` says) and signature; the
/// payload's bytes, the key id and the algorithm.
fn verify_signed(
    token: &str,
    keys: &VerifyingKeySet,
    typ_ok: fn(Option<&str>) -> bool,
) -> Result<(Vec<u8>, String, SigningAlg), JwsError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwsError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    let header_bytes = b64url_decode(h64).ok_or(JwsError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| JwsError::Malformed)?;
    if header.alg.eq_ignore_ascii_case("none") || header.alg.starts_with("HS") {
        return Err(JwsError::UnsupportedAlg);
    }
    let header_alg = SigningAlg::parse(&header.alg).ok_or(JwsError::UnsupportedAlg)?;
    if header.crit.is_some() {
        return Err(JwsError::UnsupportedCritical);
    }
    if !typ_ok(header.typ.as_deref()) {
        return Err(JwsError::WrongType);
    }
    let kid = header.kid.ok_or(JwsError::MissingKid)?;
    let key = keys.get(&kid).ok_or(JwsError::UnknownKid(kid))?;
    if key.alg != header_alg {
        return Err(JwsError::AlgMismatch);
    }
    let sig = b64url_decode(s64).ok_or(JwsError::Malformed)?;
    let signing_input_len = h64.len() + 1 + p64.len();
    if !key.verify_signature(&token.as_bytes()[..signing_input_len], &sig) {
        return Err(JwsError::BadSignature);
    }
    let payload = b64url_decode(p64).ok_or(JwsError::Malformed)?;
    Ok((payload, key.kid.clone(), key.alg))
}

/// RFC 9068 §4: `typ` must be `at+jwt` (the `application/` prefix is allowed).
fn is_access_token_typ(typ: Option<&str>) -> bool {
    let Some(typ) = typ else { return false };
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    typ.eq_ignore_ascii_case(crate::ACCESS_TOKEN_TYP)
}

/// The header `kid` without verifying anything; used to decide whether an
/// unknown key is worth a JWKS refetch.
pub fn peek_kid(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let h64 = token.split('.').next()?;
    let header: Header = serde_json::from_slice(&b64url_decode(h64)?).ok()?;
    header.kid
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    fn es256_key(kid: &str) -> (EcdsaKeyPair, Jwk) {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("gen");
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("load");
        let public = pair.public_key().as_ref();
        let jwk = Jwk {
            kty: "EC".into(),
            kid: kid.into(),
            alg: Some("ES256".into()),
            use_: Some("sig".into()),
            crv: Some("P-256".into()),
            x: Some(b64url_encode(&public[1..33])),
            y: Some(b64url_encode(&public[33..65])),
            n: None,
            e: None,
        };
        (pair, jwk)
    }

    fn claims_json() -> String {
        r#"{"iss":"i","sub":"u","aud":"a","exp":10,"iat":1,"jti":"j","sid":"s"}"#.into()
    }

    fn sign_es(pair: &EcdsaKeyPair, header: &str, payload: &str) -> String {
        let input = format!(
            "{}.{}",
            b64url_encode(header.as_bytes()),
            b64url_encode(payload.as_bytes())
        );
        let sig = pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", b64url_encode(sig.as_ref()))
    }

    fn set(jwks: Vec<Jwk>) -> VerifyingKeySet {
        let (set, skipped) = VerifyingKeySet::from_jwks(&JwkSet {
            keys: jwks,
            version: 0,
        });
        assert!(skipped.is_empty(), "{skipped:?}");
        set
    }

    const GOOD_HEADER: &str = r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#;

    #[test]
    fn verifies_a_good_es256_token() {
        let (pair, jwk) = es256_key("k1");
        let token = sign_es(&pair, GOOD_HEADER, &claims_json());
        let verified = verify(&token, &set(vec![jwk])).expect("valid");
        assert_eq!(verified.claims.sub, "u");
        assert_eq!(verified.alg, SigningAlg::ES256);
    }

    #[test]
    fn refuses_tampered_payload_and_foreign_key() {
        let (pair, jwk) = es256_key("k1");
        let token = sign_es(&pair, GOOD_HEADER, &claims_json());
        let mut parts: Vec<&str> = token.split('.').collect();
        let evil = b64url_encode(claims_json().replace("\"u\"", "\"admin\"").as_bytes());
        parts[1] = &evil;
        assert_eq!(
            verify(&parts.join("."), &set(vec![jwk.clone()])).unwrap_err(),
            JwsError::BadSignature
        );
        // Same kid, different key: signature must not verify.
        let (_, other) = es256_key("k1");
        assert_eq!(
            verify(&token, &set(vec![other])).unwrap_err(),
            JwsError::BadSignature
        );
    }

    #[test]
    fn refuses_header_tricks() {
        let (pair, jwk) = es256_key("k1");
        let keys = set(vec![jwk]);
        let cases = [
            (
                r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#,
                JwsError::UnsupportedAlg,
            ),
            (
                r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
                JwsError::UnsupportedAlg,
            ),
            (
                r#"{"alg":"RS256","typ":"at+jwt","kid":"k1"}"#,
                JwsError::AlgMismatch,
            ),
            (
                r#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#,
                JwsError::WrongType,
            ),
            (r#"{"alg":"ES256","kid":"k1"}"#, JwsError::WrongType),
            (r#"{"alg":"ES256","typ":"at+jwt"}"#, JwsError::MissingKid),
            (
                r#"{"alg":"ES256","typ":"at+jwt","kid":"k1","crit":["exp"],"exp":1}"#,
                JwsError::UnsupportedCritical,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","kid":"k1","crit":null}"#,
                JwsError::UnsupportedCritical,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","kid":"k1","crit":[]}"#,
                JwsError::UnsupportedCritical,
            ),
            (
                r#"{"alg":"ES256","typ":"at+jwt","kid":"nope"}"#,
                JwsError::UnknownKid("nope".into()),
            ),
        ];
        for (header, want) in cases {
            let token = sign_es(&pair, header, &claims_json());
            assert_eq!(verify(&token, &keys).unwrap_err(), want, "{header}");
        }
        // An embedded jwk header is ignored: the attacker's key is not used.
        let (attacker, attacker_jwk) = es256_key("k1");
        let header = format!(
            r#"{{"alg":"ES256","typ":"at+jwt","kid":"k1","jwk":{}}}"#,
            serde_json::to_string(&attacker_jwk).expect("json")
        );
        let token = sign_es(&attacker, &header, &claims_json());
        assert_eq!(verify(&token, &keys).unwrap_err(), JwsError::BadSignature);
        // application/at+jwt is the same media type.
        let token = sign_es(
            &pair,
            r#"{"alg":"ES256","typ":"application/at+jwt","kid":"k1"}"#,
            &claims_json(),
        );
        assert!(verify(&token, &keys).is_ok());
    }

    #[test]
    fn refuses_malformed_and_oversized_tokens() {
        let (_, jwk) = es256_key("k1");
        let keys = set(vec![jwk]);
        for junk in ["", "a", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30"] {
            assert!(verify(junk, &keys).is_err(), "{junk}");
        }
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(verify(&huge, &keys).unwrap_err(), JwsError::TooLarge);
    }

    #[test]
    fn verifies_eddsa_and_rejects_cross_algorithm_keys() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("gen");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("load");
        let jwk = Jwk {
            kty: "OKP".into(),
            kid: "ed".into(),
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
            crv: Some("Ed25519".into()),
            x: Some(b64url_encode(pair.public_key().as_ref())),
            y: None,
            n: None,
            e: None,
        };
        let header = r#"{"alg":"EdDSA","typ":"at+jwt","kid":"ed"}"#;
        let input = format!(
            "{}.{}",
            b64url_encode(header.as_bytes()),
            b64url_encode(claims_json().as_bytes())
        );
        let token = format!(
            "{input}.{}",
            b64url_encode(pair.sign(input.as_bytes()).as_ref())
        );
        assert!(verify(&token, &set(vec![jwk.clone()])).is_ok());

        let mut wrong = jwk;
        wrong.alg = Some("ES256".into());
        assert!(VerifyingKey::from_jwk(&wrong).is_err());
    }

    #[test]
    fn rsa_keys_outside_what_ring_verifies_are_refused_when_loaded() {
        let rsa = |n: Vec<u8>, e: Vec<u8>| Jwk {
            kty: "RSA".into(),
            kid: "r".into(),
            alg: None,
            use_: None,
            crv: None,
            x: None,
            y: None,
            n: Some(b64url_encode(&n)),
            e: Some(b64url_encode(&e)),
        };
        let mut modulus = vec![0xc5u8; 256];
        assert!(VerifyingKey::from_jwk(&rsa(modulus.clone(), vec![1, 0, 1])).is_ok());
        // A registered key ring would refuse every signature of: refused here.
        assert!(VerifyingKey::from_jwk(&rsa(vec![0xc5; 1025], vec![1, 0, 1])).is_err());
        modulus.insert(0, 0);
        assert!(VerifyingKey::from_jwk(&rsa(modulus, vec![1, 0, 1])).is_err());
        assert!(VerifyingKey::from_jwk(&rsa(vec![0xc5; 256], vec![0, 1])).is_err());
    }
}
