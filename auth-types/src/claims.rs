//! Access-token claims (RFC 9068 profile) and their time/issuer/audience checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `aud` may be one string or an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(list) => list.iter().any(|a| a == wanted),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// Session id: one per login, shared by every token refreshed from it.
    #[serde(default)]
    pub sid: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's token generation when minted; a `user_generation`
    /// revocation refuses every older one (role change, disable).
    #[serde(default)]
    pub user_gen: i64,
    /// Team memberships, team slug → role there (owner, maintainer,
    /// member). Bounded by the issuer: see `teams_overflow`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub teams: BTreeMap<String, String>,
    /// The user is in more teams than a token may carry: `teams` is then
    /// empty, and a verifier must not read absence from it as "not a member".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub teams_overflow: bool,
    /// The user proved control of `email` (OIDC's `email_verified`).
    #[serde(default)]
    pub email_verified: bool,
    /// Authentication context class: `aal1` (one factor) or `aal2` (two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// When the user last actively authenticated (sign-in or step-up),
    /// Unix seconds; distinct from `iat`, which a refresh renews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// What an OAuth client was granted (space-separated, RFC 9068 §2.2.3);
    /// absent on the issuer's own tokens, which are not scoped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Who acts for `sub` (RFC 8693 §4.1): set on a token one service got
    /// by exchanging a user's token, absent when the subject acts itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// The key the token is bound to (RFC 9449 DPoP): only a request
    /// with a proof signed by it may use the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// RFC 7800 `cnf`, as DPoP uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The JWK SHA-256 thumbprint (RFC 7638).
    pub jkt: String,
}

/// The acting party of a delegated token: an OAuth client (a service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `client:<client_id>`, the subject of the service's own tokens.
    pub sub: String,
    pub client_id: String,
}

/// Roles inside a team (the `teams` claim's values), highest first; each
/// includes those after it.
pub const TEAM_ROLES: [&str; 3] = ["owner", "maintainer", "member"];

/// Higher is more; `None` for an unknown role (which then satisfies nothing).
pub fn team_role_rank(role: &str) -> Option<usize> {
    TEAM_ROLES
        .iter()
        .position(|r| *r == role)
        .map(|i| TEAM_ROLES.len() - i)
}

/// What a verifier requires of every token.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("token has no subject")]
    MissingSubject,
}

impl AccessClaims {
    pub fn validate(&self, expect: &Expectations, now: i64) -> Result<(), ClaimError> {
        if self.iss != expect.issuer {
            return Err(ClaimError::WrongIssuer);
        }
        if !self.aud.contains(&expect.audience) {
            return Err(ClaimError::WrongAudience);
        }
        self.validate_except_audience(expect, now)
    }

    /// All that [`AccessClaims::validate`] checks but the audience, which
    /// the edge decides per route (a token for a resource, RFC 8707, is
    /// taken only where a rule names that resource).
    pub fn validate_except_audience(
        &self,
        expect: &Expectations,
        now: i64,
    ) -> Result<(), ClaimError> {
        if self.iss != expect.issuer {
            return Err(ClaimError::WrongIssuer);
        }
        if self.sub.is_empty() {
            return Err(ClaimError::MissingSubject);
        }
        if self.exp + expect.leeway_secs <= now {
            return Err(ClaimError::Expired);
        }
        if let Some(nbf) = self.nbf {
            if nbf - expect.leeway_secs > now {
                return Err(ClaimError::NotYetValid);
            }
        }
        if self.iat - expect.leeway_secs > now {
            return Err(ClaimError::IssuedInFuture);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://issuer".into(),
            sub: "u1".into(),
            aud: Audience::Many(vec!["other".into(), "mesh".into()]),
            exp: now + 60,
            iat: now,
            nbf: Some(now),
            jti: "j".into(),
            sid: "s".into(),
            client_id: "c".into(),
            roles: vec![],
            permissions: vec![],
            amr: vec!["pwd".into()],
            email: None,
            user_gen: 0,
            teams: Default::default(),
            teams_overflow: false,
            email_verified: false,
            acr: None,
            auth_time: None,
            scope: None,
            act: None,
            cnf: None,
        }
    }

    fn expect() -> Expectations {
        Expectations {
            issuer: "https://issuer".into(),
            audience: "mesh".into(),
            leeway_secs: 5,
        }
    }

    #[test]
    fn accepts_a_fresh_token_and_rejects_each_broken_claim() {
        let now = 1_000_000;
        assert_eq!(claims(now).validate(&expect(), now), Ok(()));

        let mut c = claims(now);
        c.exp = now - 6;
        assert_eq!(c.validate(&expect(), now), Err(ClaimError::Expired));
        c.exp = now - 4; // inside the leeway
        assert_eq!(c.validate(&expect(), now), Ok(()));

        let mut c = claims(now);
        c.nbf = Some(now + 30);
        assert_eq!(c.validate(&expect(), now), Err(ClaimError::NotYetValid));

        let mut c = claims(now);
        c.iat = now + 30;
        assert_eq!(c.validate(&expect(), now), Err(ClaimError::IssuedInFuture));

        let mut c = claims(now);
        c.iss = "https://evil".into();
        assert_eq!(c.validate(&expect(), now), Err(ClaimError::WrongIssuer));

        let mut c = claims(now);
        c.aud = Audience::One("other".into());
        assert_eq!(c.validate(&expect(), now), Err(ClaimError::WrongAudience));
    }

    #[test]
    fn audience_serialises_as_string_or_array() {
        let one: Audience = serde_json::from_str("\"a\"").expect("string aud");
        assert!(one.contains("a"));
        let many: Audience = serde_json::from_str("[\"a\",\"b\"]").expect("array aud");
        assert!(many.contains("b") && !many.contains("c"));
    }
}
