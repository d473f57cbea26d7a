//! The issuer as an OAuth 2.1 authorization server and OpenID Provider:
//! the client registry (`clients/`), client authentication
//! (`client_auth.rs`, with `private_key_jwt` in `assertion.rs`), the authorization endpoint's rules
//! (`authorize.rs`) and the token endpoint's grants with the ID token and
//! `userinfo` (`token.rs`), token exchange for services acting for a user
//! (`exchange.rs`), the device authorization grant and its verification
//! page's rules (`device.rs`), workload identity: a cluster's service
//! account token as a JWT bearer grant (`workload.rs`). Every token still comes from `grant/`
//! (`start_client_session`, `continue_session`, `client_credentials`,
//! `delegated`), through its one gate.

pub mod assertion;
pub mod authorize;
pub mod backchannel;
pub mod client_auth;
pub mod clients;
pub mod consent;
pub mod device;
pub mod dpop;
pub mod exchange;
pub mod introspect;
pub mod logout;
pub mod token;
pub mod workload;
