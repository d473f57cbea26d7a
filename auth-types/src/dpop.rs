//! DPoP (RFC 9449): a client proves, per request, that it holds the private
//! key an access token is bound to (`cnf.jkt`, the key's RFC 7638
//! thumbprint). The issuer checks proofs at its token endpoint, the edge on
//! every request with a bound token. Checks here are the stateless ones;
//! `jti` replay is the caller's (it keeps the state).

use ring::digest::{digest, SHA256};
use serde::Deserialize;

use crate::jwk::Jwk;
use crate::jws::{b64url_decode, b64url_encode, VerifyingKey};

/// The proof's `typ` header.
pub const PROOF_TYP: &str = "dpop+jwt";
/// What a proof may be signed with (asymmetric only).
pub const ALGS: [&str; 3] = ["ES256", "EdDSA", "RS256"];
/// A proof is taken this many seconds after its `iat`, and this many
/// before it (clock skew). Replay caches keep `jti`s as long.
pub const MAX_AGE_SECS: i64 = 60;
pub const MAX_SKEW_SECS: i64 = 5;
/// Proofs larger than this are refused unread (an RSA key is ~700 bytes).
pub const MAX_PROOF_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DPoP proof: {0}")]
pub struct ProofError(pub &'static str);

/// What a valid proof says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The key's thumbprint (RFC 7638, SHA-256, base64url).
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

/// The request a proof must be for.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub method: &'a str,
    /// The request's URL; query and fragment are ignored.
    pub url: &'a str,
    /// The access token the request carries (its hash must be `ath`); none
    /// at the token endpoint.
    pub access_token: Option<&'a str>,
    pub now: i64,
}

#[derive(Deserialize)]
struct Header {
    typ: Option<String>,
    alg: Option<String>,
    jwk: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<i64>,
    ath: Option<String>,
}

/// Checks `proof` for the request `expected` (RFC 9449 §4.3): its form,
/// its own key's signature, method, URL, age and, with an access token,
/// `ath`.
pub fn verify(proof: &str, expected: &Expected<'_>) -> Result<Proof, ProofError> {
    let fail = ProofError;
    if proof.len() > MAX_PROOF_BYTES {
        return Err(fail("too large"));
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(fail("not a JWS"));
    };
    let header: Header = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(fail("bad header"))?;
    if header.typ.as_deref() != Some(PROOF_TYP) {
        return Err(fail("typ must be dpop+jwt"));
    }
    let alg = header.alg.ok_or(fail("no alg"))?;
    if !ALGS.contains(&alg.as_str()) {
        return Err(fail("alg not supported"));
    }
    let jwk_value = header.jwk.ok_or(fail("no jwk"))?;
    let members = jwk_value.as_object().ok_or(fail("bad jwk"))?;
    // A private key in the header is a client's mistake never to accept.
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|m| members.contains_key(*m))
    {
        return Err(fail("jwk holds a private key"));
    }
    let jwk = Jwk {
        kty: str_member(members, "kty").ok_or(fail("bad jwk"))?,
        kid: String::new(),
        alg: None,
        use_: None,
        crv: str_member(members, "crv"),
        x: str_member(members, "x"),
        y: str_member(members, "y"),
        n: str_member(members, "n"),
        e: str_member(members, "e"),
    };
    let key = VerifyingKey::from_jwk(&jwk).map_err(|_| fail("unusable jwk"))?;
    if key.alg.as_str() != alg {
        return Err(fail("alg does not match the jwk"));
    }
    let sig = b64url_decode(s).ok_or(fail("bad signature"))?;
    let signed = &proof[..h.len() + 1 + p.len()];
    if !key.verify_signature(signed.as_bytes(), &sig) {
        return Err(fail("bad signature"));
    }
    let claims: Claims = b64url_decode(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(fail("bad claims"))?;
    let jti = claims.jti.ok_or(fail("no jti"))?;
    if jti.is_empty() || jti.len() > 128 {
        return Err(fail("jti must be 1 to 128 bytes"));
    }
    if claims.htm.as_deref() != Some(expected.method) {
        return Err(fail("htm is not this request's method"));
    }
    let htu = claims.htu.ok_or(fail("no htu"))?;
    if normalise_url(&htu).is_none() || normalise_url(&htu) != normalise_url(expected.url) {
        return Err(fail("htu is not this request's URL"));
    }
    let iat = claims.iat.ok_or(fail("no iat"))?;
    if iat > expected.now + MAX_SKEW_SECS || iat < expected.now - MAX_AGE_SECS {
        return Err(fail("iat is not recent"));
    }
    match (expected.access_token, claims.ath.as_deref()) {
        (Some(token), Some(ath)) if ath == access_token_hash(token) => {}
        (Some(_), _) => return Err(fail("ath is not the access token's hash")),
        (None, Some(_)) => return Err(fail("ath without an access token")),
        (None, None) => {}
    }
    Ok(Proof {
        jkt: thumbprint(&jwk).ok_or(fail("unusable jwk"))?,
        jti,
        iat,
    })
}

fn str_member(m: &serde_json::Map<String, serde_json::Value>, k: &str) -> Option<String> {
    m.get(k).and_then(|v| v.as_str()).map(str::to_string)
}

/// `ath`: base64url SHA-256 of the access token.
pub fn access_token_hash(token: &str) -> String {
    b64url_encode(digest(&SHA256, token.as_bytes()).as_ref())
}

/// RFC 7638: SHA-256 of the key's required members, in order, no spaces.
pub fn thumbprint(jwk: &Jwk) -> Option<String> {
    let q = |s: &Option<String>| s.as_deref().and_then(|v| serde_json::to_string(v).ok());
    let canonical = match jwk.kty.as_str() {
        "EC" => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            q(&jwk.crv)?,
            q(&jwk.x)?,
            q(&jwk.y)?
        ),
        "OKP" => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            q(&jwk.crv)?,
            q(&jwk.x)?
        ),
        "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, q(&jwk.e)?, q(&jwk.n)?),
        _ => return None,
    };
    Some(b64url_encode(
        digest(&SHA256, canonical.as_bytes()).as_ref(),
    ))
}

/// `scheme://host[:port]/path` with scheme and host lower-cased, the
/// default port dropped, query and fragment cut: what `htu` is compared by.
pub fn normalise_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let mut host = authority.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    if host.ends_with(default) {
        host.truncate(host.len() - default.len());
    }
    Some(format!("{scheme}://{host}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = Jwk {
            kty: "RSA".into(),
            kid: String::new(),
            alg: None,
            use_: None,
            crv: None,
            x: None,
            y: None,
            n: Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into()),
            e: Some("AQAB".into()),
        };
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn urls_compare_without_query_case_or_default_port() {
        let n = |u| normalise_url(u);
        assert_eq!(
            n("HTTPS://Api.Example:443/a/b?x=1#f"),
            n("https://api.example/a/b")
        );
        assert_eq!(n("http://h:80"), n("http://h/"));
        assert_ne!(n("https://h/a"), n("https://h/b"));
        assert_ne!(n("https://h:8443/a"), n("https://h/a"));
        assert_ne!(n("http://h/a"), n("https://h/a"));
        assert!(n("ftp://h/a").is_none() && n("https://u@h/a").is_none() && n("h/a").is_none());
    }
}
