//! Pure rules and values: no store, no HTTP. Password hashing and policy,
//! TOTP, signing keys and their rotation plan, tokens, the clock, rate
//! limits.

pub mod clock;
pub mod keys;
pub mod mfa;
pub mod oauth;
pub mod password;
pub mod pat;
pub mod ratelimit;
pub mod rotation;
pub mod tokens;
