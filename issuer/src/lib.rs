//! DevMentor Auth issuer.
//!
//! `build` opens the database, runs migrations and loads the signing keys;
//! `Issuer::serve` runs the HTTP service on a listener until `shutdown`
//! resolves, so tests start the real server on port 0.
//!
//! Layers, one direction (docs/design/architecture.md; `tests/it/layers.rs`
//! guards it): `http` (JSON handlers and pages), `cli` and `jobs` call
//! `service`, which calls `store` and `domain`.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod service;
pub mod store;
pub mod testing;

pub use app::{build, kek_path, open_kek, shutdown_signal, Issuer};
pub use jobs::{audit_refusals, key_tick};
pub use service::state::{AppState, REVOCATION_LEEWAY_SECS};
