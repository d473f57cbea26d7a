//! Issuer integration tests: the real server on a loopback port, on SQLite
//! and on PostgreSQL (the latter provided by ./scripts/test.sh).

mod acr;
mod audit;
mod backchannel;
mod cli;
mod client_keys;
mod client_policy;
mod device;
mod dpop;
mod feed;
mod github;
mod http;
mod interop;
mod keys;
mod layers;
mod limits;
mod mail;
mod mfa;
mod oauth;
mod openapi;
mod passkeys;
mod pats;
mod ratelimit;
mod resources;
mod review;
mod service_tokens;
mod store;
mod support;
mod teams;
mod tls;
mod token_exchange;
mod users;
mod workload;
