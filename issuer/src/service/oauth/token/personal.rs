//! A personal access token exchanged for a short access token (RFC 8693
//! with our `subject_token_type`). The token is the credential: no client
//! authenticates. The access token carries the personal token's session
//! (`sid`) and scope, so the edge checks it as any other and revoking the
//! personal token refuses it there within the feed's lag.

use super::types::{invalid_grant, TokenRequest, TokenResponse};
use crate::domain::oauth::pick_scopes;
use crate::domain::pat::{self, CLIENT_ID};
use crate::domain::tokens::refresh_token_hash;
use crate::service::context::Client;
use crate::service::error::{Error, Result};
use crate::service::grant;
use crate::service::oauth::client_auth::Credentials;
use crate::service::oauth::exchange::ACCESS_TOKEN_TYPE;
use crate::store::{AuditEvent, Outcome};
use crate::AppState;

pub(super) async fn exchange(
    state: &AppState,
    client: &Client,
    creds: &Credentials,
    req: &TokenRequest,
) -> Result<TokenResponse> {
    let invalid = |m: &str| Error::bad_request("invalid_request", m);
    let authenticated = creds.basic.is_some()
        || creds.client_id.is_some()
        || creds.client_secret.is_some()
        || creds.assertion.is_some();
    if authenticated {
        return Err(invalid(
            "a personal access token is its own credential: send no client authentication",
        ));
    }
    if req.actor_token.is_some() || req.resource.is_some() || req.audience.is_some() {
        return Err(invalid(
            "actor_token, resource and audience are not taken with a personal access token: \
             its tokens are for the mesh",
        ));
    }
    if req
        .requested_token_type
        .as_deref()
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(invalid(
            "requested_token_type: only urn:ietf:params:oauth:token-type:access_token",
        ));
    }
    let presented = req
        .subject_token
        .as_deref()
        .ok_or_else(|| invalid("subject_token is missing"))?;
    // A look-alike is refused without a lookup.
    if !pat::well_formed(presented) {
        return Err(invalid_grant("not a personal access token"));
    }
    let now = state.now();
    let found = state
        .store
        .personal_token_session(&refresh_token_hash(presented))
        .await?
        .filter(|s| s.client_id.as_deref() == Some(CLIENT_ID));
    let user = match &found {
        Some(s) if s.is_live(now.secs()) => state.store.user_by_id(&s.user_id).await?,
        _ => None,
    };
    let (Some(session), Some(user)) = (found.clone(), user) else {
        // A revoked or expired one tried is worth knowing (a leak being
        // used); its id, never the token.
        if let Some(s) = &found {
            let event = AuditEvent::new(now.ms, "personal_token_refused")
                .actor(&s.user_id)
                .client(client)
                .session(&s.id)
                .outcome(Outcome::Denied, "revoked_or_expired");
            state.audit(event).await;
        }
        return Err(invalid_grant(
            "the personal access token is revoked or has expired",
        ));
    };
    let held = session.scope.clone().unwrap_or_default();
    let grantable: Vec<&str> = held.split(' ').collect();
    let scope = pick_scopes(req.scope.as_deref(), &grantable)
        .map_err(|s| Error::bad_request("invalid_scope", format!("scope: {s:?} is not held")))?
        .join(" ");
    if scope.is_empty() {
        return Err(Error::bad_request("invalid_scope", "scope: at least one"));
    }
    let mut narrowed = session.clone();
    narrowed.scope = Some(scope.clone());
    let tokens = grant::personal(state, client, &user, &narrowed, now).await?;
    if let Err(e) = state
        .store
        .note_personal_token_use(&session.id, now.secs())
        .await
    {
        tracing::warn!(error = %e, "personal access token's use not recorded");
    }
    Ok(TokenResponse::for_service(
        tokens,
        scope,
        Some(ACCESS_TOKEN_TYPE),
    ))
}
