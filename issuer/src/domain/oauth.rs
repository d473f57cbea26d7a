//! The pure rules of OAuth 2.1 / OpenID Connect: PKCE, redirect-URI
//! matching, scopes, `at_hash`, and signing an ID token.

use auth_types::jws::b64url_encode;
use auth_types::SigningAlg;
use ring::digest::{digest, SHA256, SHA512};
use serde::Serialize;
use serde_json::json;

use crate::domain::keys::SigningKey;

/// The scopes the issuer knows. `openid` asks for an ID token; `profile`
/// and `email` for those claims; `offline_access` for a refresh token.
pub const KNOWN_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// A client-defined scope (`notes:read`): lower-case letters, digits and
/// `:._-`, at most 64 characters.
pub fn valid_scope_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":._-".contains(&b))
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// An S256 challenge is the base64url SHA-256 of a verifier: 43 characters.
pub fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The subject of a client's own tokens (`client_credentials`): not a
/// user's id, so no user's rules or revocations apply to it, and one
/// `user_before` revocation of it ends every token the client holds.
pub fn client_subject(client_id: &str) -> String {
    format!("client:{client_id}")
}

/// The token exchange grant (RFC 8693): a service trades a user's token
/// for one to call another service for that user.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The device authorization grant (RFC 8628): a device without a browser
/// (a CLI over SSH) is signed in from another screen.
pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The JWT bearer grant (RFC 7523 §2.1): here, a workload's token from a
/// trusted cluster (workload identity).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// User codes: consonants only (RFC 8628 §6.1: no vowels, so no words; no
/// look-alikes), 8 of them: 20^8, about 34 bits, against an attacker held
/// to a few guesses a minute by the rate limit, for the code's 10 minutes.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const USER_CODE_LEN: usize = 8;

/// A user code from random bytes, uniformly: bytes of 240 and over (the
/// remainder of 256 by 20) are skipped. `None` if too few were left.
pub fn user_code(random: &[u8]) -> Option<String> {
    let n = USER_CODE_ALPHABET.len();
    let code: String = random
        .iter()
        .filter(|b| usize::from(**b) < 256 - 256 % n)
        .take(USER_CODE_LEN)
        .map(|b| char::from(USER_CODE_ALPHABET[usize::from(*b) % n]))
        .collect();
    (code.len() == USER_CODE_LEN).then_some(code)
}

/// A user code as typed (any case, with dashes or spaces) in its stored
/// form, if it could be one.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// A user code as shown: `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_string(),
    }
}

/// Scopes about a person (OpenID Connect's, and staying signed in): a
/// service, as itself or acting for a user, is given none of them.
pub const PERSONAL_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// The scopes a request gets: those it asked for (by spaces, repeats
/// dropped), each of which must be `grantable`; all of `grantable` when it
/// asked for none. `Err` names the first scope it may not have.
pub fn pick_scopes(asked: Option<&str>, grantable: &[&str]) -> Result<Vec<String>, String> {
    let Some(asked) = asked else {
        return Ok(grantable.iter().map(|s| s.to_string()).collect());
    };
    let mut scope: Vec<String> = Vec::new();
    for s in asked.split(' ').filter(|s| !s.is_empty()) {
        if !grantable.contains(&s) {
            return Err(s.to_string());
        }
        if !scope.iter().any(|k| k == s) {
            scope.push(s.to_string());
        }
    }
    Ok(scope)
}

/// Whether a user's consent (the scopes they allowed a client, by spaces)
/// covers every scope in `scope`.
pub fn consent_covers(consented: Option<&str>, scope: &str) -> bool {
    consented.is_some_and(|allowed| {
        scope
            .split_whitespace()
            .all(|s| allowed.split_whitespace().any(|a| a == s))
    })
}

/// Whether `verifier` is the one `challenge` (S256) was made from. Both
/// sides are public once presented, so a plain comparison is enough.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    valid_verifier(verifier)
        && b64url_encode(digest(&SHA256, verifier.as_bytes()).as_ref()) == challenge
}

/// Whether the presented `redirect_uri` is the registered one. Exact string
/// match (no normalisation: `/cb` and `/cb/`, `HTTPS:` and `https:` differ),
/// except that a native app's loopback redirect (`http://127.0.0.1/…` or
/// `http://[::1]/…` registered without a port) may use any port (RFC 8252
/// §7.3). `localhost` gets no such leeway: it can resolve elsewhere.
pub fn redirect_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    for host in ["http://127.0.0.1", "http://[::1]"] {
        let (Some(reg_rest), Some(pre_rest)) =
            (registered.strip_prefix(host), presented.strip_prefix(host))
        else {
            continue;
        };
        // Registered without a port: the presented one may add any port.
        if !reg_rest.starts_with('/') {
            return false;
        }
        let Some(after_colon) = pre_rest.strip_prefix(':') else {
            return false;
        };
        let digits = after_colon.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return false;
        }
        let (port, path) = after_colon.split_at(digits);
        return port.parse::<u16>().is_ok_and(|p| p > 0) && path == reg_rest;
    }
    false
}

/// Whether a URI may be registered as a redirect: absolute, no fragment
/// (RFC 6749 §3.1.2), no userinfo; https, or http only on a loopback IP;
/// or a private-use scheme for native apps (`com.example.app:/cb`, RFC
/// 8252 §7.1: reverse domain, so with a dot).
pub fn registrable_redirect(uri: &str) -> bool {
    let Ok(url) = oauth2::url::Url::parse(uri) else {
        return false;
    };
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    // What was parsed must be what was written: no normalisation hides in it.
    if url.as_str() != uri && url.as_str() != format!("{uri}/") {
        return false;
    }
    match url.scheme() {
        "https" => url.host_str().is_some(),
        "http" => matches!(url.host_str(), Some("127.0.0.1") | Some("[::1]")),
        s => s.contains('.') && !matches!(s, "javascript" | "data" | "file"),
    }
}

/// A resource indicator (RFC 8707 §2): an absolute URI without fragment
/// or query, at most 256 bytes.
pub fn valid_resource(uri: &str) -> bool {
    uri.len() <= 256
        && oauth2::url::Url::parse(uri)
            .is_ok_and(|u| u.fragment().is_none() && u.query().is_none() && !u.cannot_be_a_base())
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of the hash the ID
/// token's `alg` uses, over the access token. Ed25519 hashes with SHA-512.
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    let d = match alg {
        SigningAlg::EdDSA => digest(&SHA512, access_token.as_bytes()),
        _ => digest(&SHA256, access_token.as_bytes()),
    };
    let bytes = d.as_ref();
    b64url_encode(&bytes[..bytes.len() / 2])
}

/// A signed ID token: `typ: JWT`, the key's `kid` and `alg`.
pub fn mint_id_token<C: Serialize>(key: &SigningKey, claims: &C) -> anyhow::Result<String> {
    mint_typed(key, "JWT", claims)
}

/// A signed back-channel logout token: `typ: logout+jwt` (explicit typing,
/// so it can be taken for no other kind of token).
pub fn mint_logout_token<C: Serialize>(key: &SigningKey, claims: &C) -> anyhow::Result<String> {
    mint_typed(key, "logout+jwt", claims)
}

fn mint_typed<C: Serialize>(key: &SigningKey, typ: &str, claims: &C) -> anyhow::Result<String> {
    let header = json!({"alg": key.alg.as_str(), "typ": typ, "kid": key.kid});
    let mut token = b64url_encode(&serde_json::to_vec(&header)?);
    token.push('.');
    token.push_str(&b64url_encode(&serde_json::to_vec(claims)?));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64url_encode(&signature));
    Ok(token)
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_codes_are_uniform_consonants_and_typed_loosely() {
        let code = super::user_code(&[0, 19, 20, 239, 240, 255, 1, 2, 3, 4]).expect("code");
        // 240 and 255 are skipped; 20 and 239 wrap to B and Z.
        assert_eq!(code, "BZBZCDFG");
        assert_eq!(super::user_code(&[250; 32]), None);
        assert_eq!(
            super::normalize_user_code("bzbz-cdfg").as_deref(),
            Some("BZBZCDFG")
        );
        assert_eq!(
            super::normalize_user_code(" BZBZ CDFG ").as_deref(),
            Some("BZBZCDFG")
        );
        for bad in ["BZBZ-CDFA", "BZBZCDF", "BZBZCDFGH", "", "BZBZ_CDFG"] {
            assert_eq!(super::normalize_user_code(bad), None, "{bad}");
        }
        assert_eq!(super::display_user_code("BZBZCDFG"), "BZBZ-CDFG");
    }

    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(valid_challenge(challenge));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            challenge
        ));
        // `plain`: the verifier presented as its own challenge.
        assert!(!pkce_matches(verifier, verifier));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn redirects_match_exactly_but_loopback_ports() {
        let reg = "https://app.example.com/cb";
        assert!(redirect_matches(reg, reg));
        for bad in [
            "https://app.example.com/cb/",
            "https://APP.example.com/cb",
            "HTTPS://app.example.com/cb",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#f",
            "https://app.example.com/%63b",
            "https://user@app.example.com/cb",
            "https://app.example.com:443/cb",
            "https://app.example.com.evil.com/cb",
            "https://app.example.com/cb/../cb",
        ] {
            assert!(!redirect_matches(reg, bad), "{bad}");
        }
        let native = "http://127.0.0.1/callback";
        assert!(redirect_matches(native, "http://127.0.0.1:51004/callback"));
        assert!(redirect_matches("http://[::1]/cb", "http://[::1]:8080/cb"));
        for bad in [
            "http://127.0.0.1:51004/callback/x",
            "http://127.0.0.1:0/callback",
            "http://127.0.0.1:99999/callback",
            "http://127.0.0.1:80x/callback",
            "http://127.0.0.1@evil.com:80/callback",
            "http://localhost:51004/callback",
            "http://127.0.0.1:51004/callback?x",
        ] {
            assert!(!redirect_matches(native, bad), "{bad}");
        }
        // Registered with a port: exact only.
        assert!(!redirect_matches(
            "http://127.0.0.1:8080/cb",
            "http://127.0.0.1:9090/cb"
        ));
    }

    #[test]
    fn what_may_be_registered() {
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1/cb",
            "http://[::1]/cb",
            "com.example.app:/oauth",
        ] {
            assert!(registrable_redirect(ok), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "http://localhost/cb",
            "https://app.example.com/cb#x",
            "https://u:p@app.example.com/cb",
            "javascript:alert(1)",
            "/relative",
            "https://app.example.com/a/../cb",
        ] {
            assert!(!registrable_redirect(bad), "{bad}");
        }
    }

    #[test]
    fn at_hash_is_the_left_half() {
        // OIDC Core §A.3's example: at_hash of this token with RS256.
        assert_eq!(
            at_hash(
                SigningAlg::RS256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(at_hash(SigningAlg::EdDSA, "x").len(), 43);
    }
}
