//! The grants of services: as themselves (`client_credentials`, and a
//! workload's cluster token for its client), and for a user (token
//! exchange).

use super::types::{invalid_grant, invalid_target, TokenRequest, TokenResponse};
use crate::domain::oauth::{pick_scopes, JWT_BEARER, PERSONAL_SCOPES};
use crate::service::context::Client;
use crate::service::error::{Error, Result};
use crate::service::grant;
use crate::service::oauth::client_auth::{self, Credentials};
use crate::service::oauth::exchange::{ExchangeRequest, ACCESS_TOKEN_TYPE};
use crate::store::OAuthClient;
use crate::AppState;

/// Token exchange (RFC 8693): the answer to `exchange.rs`'s grant.
pub(super) async fn on_behalf(
    state: &AppState,
    client: &Client,
    actor: &OAuthClient,
    req: &TokenRequest,
) -> Result<TokenResponse> {
    let asked = ExchangeRequest {
        subject_token: req.subject_token.as_deref(),
        subject_token_type: req.subject_token_type.as_deref(),
        actor_token: req.actor_token.as_deref(),
        requested_token_type: req.requested_token_type.as_deref(),
        resource: req.resource.as_deref(),
        audience: req.audience.as_deref(),
        scope: req.scope.as_deref(),
    };
    let (tokens, scope) =
        crate::service::oauth::exchange::exchange(state, client, actor, asked).await?;
    Ok(TokenResponse::for_service(
        tokens,
        scope,
        Some(ACCESS_TOKEN_TYPE),
    ))
}

/// Workload identity: a cluster's service-account token (RFC 7523 JWT
/// bearer) for the client its account is mapped to, which then gets what
/// `client_credentials` gives it.
pub(super) async fn workload_token(
    state: &AppState,
    client: &Client,
    creds: &Credentials,
    req: &TokenRequest,
) -> Result<TokenResponse> {
    let assertion = req
        .assertion
        .as_deref()
        .ok_or_else(|| Error::bad_request("invalid_request", "assertion is missing"))?;
    let now = state.now();
    let workload = state
        .workload
        .verify(assertion, &state.settings.issuer_url, now.secs())
        .await?;
    let oauth_client = state
        .store
        .client(&workload.client_id)
        .await?
        .filter(|c| c.may_use(JWT_BEARER))
        .ok_or_else(|| {
            invalid_grant("the service account's client is not registered for this grant")
        })?;
    let presented = creds.basic.is_some()
        || creds.client_id.is_some()
        || creds.client_secret.is_some()
        || creds.assertion.is_some();
    if presented && client_auth::authenticate(state, creds).await?.id != oauth_client.id {
        return Err(Error::invalid_client(
            "the client authenticated is not the one the assertion's service account maps to",
        ));
    }
    let via = serde_json::json!({
        "cluster": workload.cluster,
        "namespace": workload.namespace,
        "service_account": workload.service_account,
        "pod": workload.pod,
    });
    service_token(state, client, &oauth_client, req, Some(via)).await
}

/// `client_credentials` (RFC 6749 §4.4): the scopes asked for (by default
/// every route scope the client has) and at most one resource. `via`: how
/// the client proved itself, when not by its own credentials (audited).
pub(super) async fn service_token(
    state: &AppState,
    client: &Client,
    oauth_client: &OAuthClient,
    req: &TokenRequest,
    via: Option<serde_json::Value>,
) -> Result<TokenResponse> {
    let granted: Vec<&str> = oauth_client
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !PERSONAL_SCOPES.contains(s))
        .collect();
    let scope = pick_scopes(req.scope.as_deref(), &granted)
        .map_err(|s| {
            Error::bad_request(
                "invalid_scope",
                format!("{s}: not a scope this client may ask for as itself"),
            )
        })?
        .join(" ");
    if let Some(r) = req.resource.as_deref() {
        if !oauth_client.audiences.iter().any(|a| a == r) {
            return Err(invalid_target(
                "resource: not a resource this client may ask for",
            ));
        }
    }
    let tokens = grant::client_credentials(
        state,
        client,
        oauth_client,
        &scope,
        req.resource.as_deref(),
        via,
        state.now(),
    )
    .await?;
    Ok(TokenResponse::for_service(tokens, scope, None))
}
