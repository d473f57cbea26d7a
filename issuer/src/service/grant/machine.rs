//! Tokens for services: a service acting as itself (`client_credentials`)
//! and a service acting for a user (token exchange, RFC 8693). Neither
//! opens a session or gives a refresh token: the service asks again.

use auth_types::{AccessClaims, Actor, Audience, Confirmation};

use super::{has_second_factor, role_needs_second_factor, Bound, Tokens};
use crate::domain::clock::Now;
use crate::domain::oauth::client_subject;
use crate::domain::tokens::{mint_access_token, new_id};
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error as ApiError, Result as ApiResult};
use crate::store::{AuditEvent, OAuthClient, Outcome};
use crate::AppState;

/// A service's token (`client_credentials`): the client acting as itself,
/// with the scope and resource it asked for (already checked against its
/// registration). No session and no refresh token: it asks again. `via`:
/// how it proved itself when not by its own credentials (a workload's
/// cluster token), for the audit.
pub async fn client_credentials(
    state: &AppState,
    client: &Client,
    oauth_client: &OAuthClient,
    scope: &str,
    resource: Option<&str>,
    via: Option<serde_json::Value>,
    now: Now,
) -> ApiResult<Tokens> {
    let settings = &state.settings;
    let bound = Bound {
        client_id: Some(&oauth_client.id),
        scope: Some(scope),
        resource,
        access_ttl: oauth_client.access_token_ttl,
        jkt: client.dpop_jkt.as_deref(),
    };
    let ttl = bound.access_ttl(settings);
    let claims = AccessClaims {
        iss: settings.issuer_url.clone(),
        sub: client_subject(&oauth_client.id),
        aud: Audience::One(resource.unwrap_or(&settings.audience).to_string()),
        exp: now.secs() + ttl,
        iat: now.secs(),
        nbf: Some(now.secs()),
        user_gen: 0,
        teams: Default::default(),
        teams_overflow: false,
        email_verified: false,
        acr: None,
        auth_time: None,
        jti: new_id(),
        // One per token: there is no session to end, only the client.
        sid: format!("cc:{}", new_id()),
        client_id: oauth_client.id.clone(),
        roles: Vec::new(),
        permissions: Vec::new(),
        amr: Vec::new(),
        email: None,
        scope: Some(scope.to_string()),
        act: None,
        cnf: bound.jkt.map(|jkt| Confirmation {
            jkt: jkt.to_string(),
        }),
    };
    let keys = state.keys.snapshot();
    let access_token = mint_access_token(&keys.signing, &claims).map_err(ApiError::internal)?;
    state.usage.record(&oauth_client.id, now);
    state.metrics.login(if via.is_some() {
        "workload"
    } else {
        "client_credentials"
    });
    state
        .audit(
            AuditEvent::new(now.ms, "client_credentials_grant")
                .client(client)
                .meta(serde_json::json!({
                    "client_id": oauth_client.id,
                    "scope": scope,
                    "resource": resource,
                    "workload": via,
                })),
        )
        .await;
    Ok(Tokens {
        access_token,
        expires_in: ttl,
        session_id: claims.sid,
        refresh: None,
    })
}

/// What a service asks for a user (already checked against its
/// registration and the user's token).
#[derive(Debug, Clone, Copy)]
pub struct OnBehalf<'a> {
    pub scope: &'a str,
    pub resource: &'a str,
}

/// A token for `subject`'s user, for another service, with the service
/// (`actor`) named in `act`. It shares the user's session (`sid`), so
/// ending that session, or the user's tokens, ends it at the edge too; it
/// never outlives the token it came from. The same gate as every grant:
/// a disabled user, or a session without the second factor a role of the
/// user needs, gets nothing.
pub async fn delegated(
    state: &AppState,
    client: &Client,
    actor: &OAuthClient,
    subject: &Authenticated,
    asked: OnBehalf<'_>,
    now: Now,
) -> ApiResult<Tokens> {
    let user = &subject.user;
    let session = &subject.session;
    let refusal = if user.disabled_at.is_some() {
        Some("account_disabled")
    } else if role_needs_second_factor(state, user) && !has_second_factor(&session.amr) {
        Some("mfa_required")
    } else {
        None
    };
    if let Some(reason) = refusal {
        state.metrics.login(if reason == "mfa_required" {
            "mfa_required"
        } else {
            "disabled"
        });
        state
            .audit(
                AuditEvent::new(now.ms, "token_exchange")
                    .user(user)
                    .client(client)
                    .session(&session.id)
                    .outcome(Outcome::Denied, reason)
                    .meta(serde_json::json!({"actor": actor.id})),
            )
            .await;
        return Err(ApiError::bad_request(
            "invalid_request",
            "subject_token: this user's session may not be acted for",
        ));
    }
    let bound = Bound {
        client_id: Some(&actor.id),
        scope: Some(asked.scope),
        resource: Some(asked.resource),
        access_ttl: actor.access_token_ttl,
        jkt: client.dpop_jkt.as_deref(),
    };
    let from = &subject.claims;
    let exp = (now.secs() + bound.access_ttl(&state.settings)).min(from.exp);
    let claims = AccessClaims {
        iss: state.settings.issuer_url.clone(),
        sub: user.id.clone(),
        aud: Audience::One(asked.resource.to_string()),
        exp,
        iat: now.secs(),
        nbf: Some(now.secs()),
        jti: new_id(),
        sid: session.id.clone(),
        client_id: actor.id.clone(),
        roles: from.roles.clone(),
        permissions: Vec::new(),
        amr: from.amr.clone(),
        // The address stays with the user's own token.
        email: None,
        user_gen: from.user_gen,
        teams: from.teams.clone(),
        teams_overflow: from.teams_overflow,
        email_verified: from.email_verified,
        acr: from.acr.clone(),
        auth_time: from.auth_time,
        scope: Some(asked.scope.to_string()),
        act: Some(Actor {
            sub: client_subject(&actor.id),
            client_id: actor.id.clone(),
        }),
        cnf: bound.jkt.map(|jkt| Confirmation {
            jkt: jkt.to_string(),
        }),
    };
    let keys = state.keys.snapshot();
    let access_token = mint_access_token(&keys.signing, &claims).map_err(ApiError::internal)?;
    state.usage.record(&actor.id, now);
    state.metrics.login("token_exchange");
    state
        .audit(
            AuditEvent::new(now.ms, "token_exchange")
                .user(user)
                .client(client)
                .session(&session.id)
                .meta(serde_json::json!({
                    "actor": actor.id,
                    "subject_client_id": from.client_id,
                    "scope": asked.scope,
                    "resource": asked.resource,
                })),
        )
        .await;
    Ok(Tokens {
        access_token,
        expires_in: exp - now.secs(),
        session_id: session.id.clone(),
        refresh: None,
    })
}
