//! The rules of the product, with no HTTP in them: what each action checks,
//! changes, publishes and audits, as typed outcomes and one [`Error`]. The
//! JSON API, the hosted pages, the CLI and the background jobs are adapters
//! over this.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod context;
pub mod cursor;
pub mod email;
pub mod error;
pub mod factors;
pub mod feed;
pub mod github;
pub mod grant;
pub mod identities;
pub mod keyring;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod oauth;
pub mod passkeys;
pub mod password_check;
pub mod pats;
pub mod profile;
pub mod recovery;
pub mod redirects;
pub mod revocations;
pub mod roles;
pub mod sessions;
pub mod signin;
pub mod state;
pub mod teams;
pub mod tickets;
pub mod usage;
pub mod users;

pub use error::Error;
