//! Revocation records: written durably by the issuer in sequence order and
//! followed by sidecars.

use serde::{Deserialize, Serialize};

use crate::claims::AccessClaims;

/// The largest clock leeway a verifier may allow past `exp`. Revocation
/// records outlive every token they cover by at least this much, so a revoked
/// token can never come back when its record is pruned.
pub const MAX_LEEWAY_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// One access token, by `jti`.
    Token,
    /// Every access token of one session, by `sid`.
    Session,
    /// Every token of one user issued before `issued_before`.
    UserBefore,
    /// Every token of one user with `user_gen` below `issued_before` (which
    /// holds the first generation still valid for this kind).
    UserGeneration,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Token => "token",
            RevocationKind::Session => "session",
            RevocationKind::UserBefore => "user_before",
            RevocationKind::UserGeneration => "user_generation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "token" => Some(RevocationKind::Token),
            "session" => Some(RevocationKind::Session),
            "user_before" => Some(RevocationKind::UserBefore),
            "user_generation" => Some(RevocationKind::UserGeneration),
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
            RevocationKind::UserGeneration => {
                claims.sub == self.subject && claims.user_gen < self.issued_before
            }
        }
    }
}

/// One message of the issuer's revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RevocationEvent {
    /// Live records after the requested sequence, up to `last_seq`. A large
    /// snapshot comes in pages; only the page with `complete` ends it, and a
    /// follower is not in sync before that.
    Snapshot {
        records: Vec<RevocationRecord>,
        last_seq: i64,
        #[serde(default = "complete_by_default")]
        complete: bool,
    },
    Revoked {
        record: RevocationRecord,
    },
    /// The signing key set changed: refetch the JWKS until it is at least
    /// this version (0: any).
    KeysChanged {
        #[serde(default)]
        version: i64,
    },
    /// The role → permission map changed: refetch it until it is at least
    /// this version.
    PermissionsChanged {
        version: i64,
    },
    /// Sent only while the issuer can read its database: proof of progress,
    /// unlike transport keep-alives, which an issuer without its database
    /// still sends.
    Heartbeat {
        last_seq: i64,
    },
}

fn complete_by_default() -> bool {
    true
}

/// The role → permission map sidecars expand roles with
/// (`GET /internal/permissions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionMap {
    pub version: i64,
    /// Role → the permissions it grants.
    pub roles: std::collections::BTreeMap<String, Vec<String>>,
}

impl PermissionMap {
    /// Whether any of `roles` grants `wanted`. Only the map decides: a
    /// `permissions` claim in a token is not honoured, since the map could
    /// never take it back.
    pub fn grants(&self, roles: &[String], wanted: &str) -> bool {
        roles.iter().any(|r| {
            self.roles
                .get(r)
                .is_some_and(|perms| perms.iter().any(|p| p == wanted))
        })
    }
}
