//! JSON handlers: each reads its request, calls the service and writes its
//! answer. No rules here.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod email;
pub mod feed;
pub mod github;
pub mod mfa;
pub mod oauth;
pub mod ops;
pub mod passkeys;
pub mod pats;
pub mod profile;
pub mod roles;
pub mod sessions;
pub mod teams;
pub mod users;
