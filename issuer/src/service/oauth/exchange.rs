//! Token exchange (RFC 8693) for on-behalf-of calls: a service (the AI
//! gateway, say) trades the token a user called it with for a token to
//! another service (the memory service) for that user, narrower in scope
//! and audience, naming itself as the actor (`act`).
//!
//! Which service may act for users, and towards which services, is its
//! registration: the token exchange grant, and `audiences` (RFC 8693's
//! `may_act`, kept on the actor rather than in every user's token).

use crate::domain::clock::Now;
use crate::domain::oauth::{pick_scopes, PERSONAL_SCOPES, TOKEN_EXCHANGE};
use crate::service::context::{verify_token, Authenticated, Client};
use crate::service::error::{Error, Kind, Result};
use crate::service::grant::{self, OnBehalf, Tokens};
use crate::store::{AuditEvent, OAuthClient, Outcome};
use crate::AppState;

/// RFC 8693 §2.1's fields (the token endpoint's form).
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    pub subject_token: Option<&'a str>,
    pub subject_token_type: Option<&'a str>,
    pub actor_token: Option<&'a str>,
    pub requested_token_type: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub scope: Option<&'a str>,
}

fn invalid_target(message: &str) -> Error {
    Error::bad_request("invalid_target", message)
}

pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// RFC 8693 §2.2.2: a request, or a subject token, not acceptable.
fn invalid_request(message: impl Into<String>) -> Error {
    Error::bad_request("invalid_request", message)
}

/// Answers a token exchange request from `actor` (already authenticated,
/// and registered for the grant). A refused one is audited (who asked,
/// and why), never with the token it named.
pub async fn exchange(
    state: &AppState,
    client: &Client,
    actor: &OAuthClient,
    req: ExchangeRequest<'_>,
) -> Result<(Tokens, String)> {
    debug_assert!(actor.may_use(TOKEN_EXCHANGE));
    let now = state.now();
    let (subject, asked) = match check(state, actor, req, now).await {
        Ok(checked) => checked,
        Err(e) => {
            if e.kind != Kind::Internal {
                state.metrics.login("token_exchange_refused");
                state
                    .audit(
                        AuditEvent::new(now.ms, "token_exchange")
                            .client(client)
                            .outcome(Outcome::Failure, e.code)
                            .meta(serde_json::json!({"actor": actor.id, "message": e.message})),
                    )
                    .await;
            }
            return Err(e);
        }
    };
    let on_behalf = OnBehalf {
        scope: &asked.0,
        resource: asked.1,
    };
    // The gate (disabled, second factor) audits its own refusals.
    let tokens = grant::delegated(state, client, actor, &subject, on_behalf, now).await?;
    Ok((tokens, asked.0))
}

/// The request's checks, in order: its form, the target, the subject
/// token (live, one of the clients the actor may act with, not
/// delegated), the scope. The user's token, and the scope and resource
/// the derived one gets.
async fn check<'a>(
    state: &AppState,
    actor: &OAuthClient,
    req: ExchangeRequest<'a>,
    now: Now,
) -> Result<(Authenticated, (String, &'a str))> {
    let subject_token = req
        .subject_token
        .ok_or_else(|| invalid_request("subject_token is missing"))?;
    match req.subject_token_type {
        Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE) => {}
        Some(_) => {
            return Err(invalid_request(
                "subject_token_type: only an access token of this issuer \
                 (urn:ietf:params:oauth:token-type:access_token) is exchanged",
            ))
        }
        None => return Err(invalid_request("subject_token_type is missing")),
    }
    if req.actor_token.is_some() {
        // The client's own authentication names the actor; a second
        // credential could only disagree with it.
        return Err(invalid_request(
            "actor_token: not accepted; the client's authentication names the actor",
        ));
    }
    if req
        .requested_token_type
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(invalid_request(
            "requested_token_type: only urn:ietf:params:oauth:token-type:access_token",
        ));
    }
    let resource = match (req.resource, req.audience) {
        (Some(r), Some(a)) if r != a => {
            return Err(invalid_target(
                "resource and audience name different targets",
            ))
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => {
            return Err(invalid_request(
                "resource (or audience) is missing: a token for another service names it",
            ))
        }
    };
    if !actor.audiences.iter().any(|a| a == resource) {
        return Err(invalid_target(
            "resource: this client may not act for users towards it",
        ));
    }
    // The user's token for the mesh, live, its session live, its user
    // enabled: exactly what the issuer's own API accepts.
    let subject = verify_token(state, subject_token, now)
        .await
        .map_err(|_| invalid_request("subject_token is invalid, expired or revoked"))?;
    if subject.claims.act.is_some() {
        // One hop: a token already acted with is not passed on again.
        return Err(invalid_request(
            "subject_token: a delegated token is not exchanged again",
        ));
    }
    if state
        .store
        .token_revoked(&subject.claims.jti, now.secs())
        .await?
    {
        return Err(invalid_request(
            "subject_token is invalid, expired or revoked",
        ));
    }
    // Only tokens the user got through a client the actor is registered
    // to act with (its own sign-in, say): a token the user gave another
    // app, which reached the actor, is not one to act with.
    if !actor.subject_clients.contains(&subject.claims.client_id) {
        return Err(invalid_request(
            "subject_token: not from a client this client may act with (its subject_clients)",
        ));
    }
    let scope = narrowed_scope(actor, subject.claims.scope.as_deref(), req.scope)?;
    Ok((subject, (scope, resource)))
}

/// The scopes the derived token carries: what the actor may ask for (its
/// route scopes, none of a person's), within what the user's token holds
/// (an application's token its scope; the user's own token is not
/// scoped), and within what was asked (by default all of that).
fn narrowed_scope(
    actor: &OAuthClient,
    subject: Option<&str>,
    asked: Option<&str>,
) -> Result<String> {
    let held = |s: &str| subject.is_none_or(|held| held.split(' ').any(|h| h == s));
    let grantable: Vec<&str> = actor
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !PERSONAL_SCOPES.contains(s) && held(s))
        .collect();
    let scope = pick_scopes(asked, &grantable).map_err(|s| {
        Error::bad_request(
            "invalid_scope",
            format!("{s}: not a scope this client may ask for on this user's behalf"),
        )
    })?;
    if scope.is_empty() {
        return Err(Error::bad_request(
            "invalid_scope",
            "no scope this client may ask for on this user's behalf",
        ));
    }
    Ok(scope.join(" "))
}
