//! Types shared by the issuer and the sidecar: access-token claims, JSON Web
//! Keys, revocation records, and strict JWS verification (RFC 8725).
//!
//! Nothing here does I/O or reads the clock: callers pass `now` (Unix seconds).
#![forbid(unsafe_code)]

pub mod claims;
pub mod dpop;
pub mod jwk;
pub mod jws;
pub mod revocation;

pub use claims::{
    team_role_rank, AccessClaims, Actor, Audience, ClaimError, Confirmation, Expectations,
    TEAM_ROLES,
};
pub use jwk::{Jwk, JwkSet, SigningAlg};
pub use jws::{JwsError, VerifiedToken, VerifyingKey, VerifyingKeySet};
pub use revocation::{
    PermissionMap, RevocationEvent, RevocationKind, RevocationRecord, MAX_LEEWAY_SECS,
};

/// The `typ` header value RFC 9068 mandates for JWT access tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
