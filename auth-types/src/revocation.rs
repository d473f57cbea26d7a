//! Revocation records: written durably by the issuer in sequence order and
//! followed by sidecars.

use serde::{Deserialize, Serialize};

use crate::claims::AccessClaims;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// One access token, by `jti`.
    Token,
    /// Every access token of one session, by `sid`.
    Session,
    /// Every token of one user issued before `issued_before`.
    UserBefore,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Token => "token",
            RevocationKind::Session => "session",
            RevocationKind::UserBefore => "user_before",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "token" => Some(RevocationKind::Token),
            "session" => Some(RevocationKind::Session),
            "user_before" => Some(RevocationKind::UserBefore),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    /// Strictly increasing per issuer database.
    pub seq: i64,
    pub kind: RevocationKind,
    /// A `jti`, a `sid`, or a user id (`sub`), by kind.
    pub subject: String,
    /// For `UserBefore`: tokens with `iat` before this (Unix seconds) are revoked.
    #[serde(default)]
    pub issued_before: i64,
    /// When the issuer recorded it, Unix milliseconds (for lag measurement).
    pub created_at_ms: i64,
    /// After this (Unix seconds) every token it covers has expired.
    pub expires_at: i64,
}

impl RevocationRecord {
    pub fn covers(&self, claims: &AccessClaims) -> bool {
        match self.kind {
            RevocationKind::Token => claims.jti == self.subject,
            RevocationKind::Session => claims.sid == self.subject,
            RevocationKind::UserBefore => {
                claims.sub == self.subject && claims.iat < self.issued_before
            }
        }
    }
}

/// One message of the issuer's revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RevocationEvent {
    /// Every live record after the requested sequence, then `last_seq`.
    Snapshot {
        records: Vec<RevocationRecord>,
        last_seq: i64,
    },
    Revoked {
        record: RevocationRecord,
    },
    /// The signing key set changed: refetch the JWKS now.
    KeysChanged,
}
