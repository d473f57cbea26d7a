//! The one path that hands out tokens. Every way of signing in (password,
//! and later GitHub, passkeys, MFA completion) ends in [`start_session`];
//! an authorization code's exchange in [`start_client_session`]; every
//! refresh ends in [`continue_session`]. Both go through [`grant`], so
//! rules such as "disabled users get no tokens", and the metrics and audit
//! of a sign-in, live in one place. The outcome is typed ([`SignIn`],
//! [`Tokens`]); `http::tokens` writes it as an answer, a page as cookies.

use auth_types::{AccessClaims, Audience, Confirmation};

use crate::config::ServeArgs;
use crate::domain::clock::Now;
use crate::domain::tokens::{mint_access_token, new_id, new_refresh_token, refresh_token_hash};
use crate::service::context::Client;
use crate::service::error::{Error as ApiError, Result as ApiResult};
use crate::store::{AuditEvent, Outcome};
use crate::store::{NewSession, OAuthBinding, Session, User};
use crate::AppState;

pub use crate::service::signin::{Delivery, Refresh, SignIn, Tokens};
pub use machine::{client_credentials, delegated, OnBehalf};

mod machine;

pub const REFRESH_COOKIE: &str = "__Host-refresh_token";
/// The `teams` claim's JSON at most, whatever `--max-token-teams` says.
const MAX_TEAMS_CLAIM_BYTES: usize = 3 * 1024;

/// Whether `user` holds a role that needs a second factor.
pub fn role_needs_second_factor(state: &AppState, user: &User) -> bool {
    let required = &state.settings.mfa_required_roles;
    user.roles.iter().any(|r| required.contains(r))
}

/// Whether `amr` includes a proved second factor.
pub fn has_second_factor(amr: &str) -> bool {
    amr.split_whitespace().any(|w| w == "mfa")
}

enum Grant<'a> {
    Start {
        amr: &'a str,
        /// The passkey that proved it, if one did.
        opened_by: Option<&'a str>,
    },
    /// An OAuth client's session, from an authorization code: the user
    /// proved who they are in the browser (`amr`, `auth_time`).
    Client(ClientGrant<'a>),
    Continue {
        session: &'a Session,
        refresh_token: String,
        /// Metrics outcome: `success`, or `grace` for a replay in the window.
        outcome: &'static str,
        delivery: Delivery,
    },
    /// A personal access token's session, exchanged for an access token.
    Personal { session: &'a Session },
}

/// What an authorization code grants: a session of the client's own.
#[derive(Debug, Clone, Copy)]
pub struct ClientGrant<'a> {
    /// Chosen before the code was spent, so a replay can find it.
    pub session_id: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub amr: &'a str,
    pub auth_time: i64,
    /// The resource (RFC 8707) the access tokens are for.
    pub resource: Option<&'a str>,
    /// The client's lifetimes (seconds), when shorter than the issuer's:
    /// its access tokens', and its session's (the refresh token's).
    pub access_ttl: Option<i64>,
    pub session_ttl: Option<i64>,
}

/// A session (and tokens) for an OAuth client, through the same gate as a
/// sign-in. The code was only issued to a signed-in browser, so no factor
/// is asked for here: a user whose role needs a second factor the sign-in
/// did not prove gets nothing.
pub async fn start_client_session(
    state: &AppState,
    client: &Client,
    user: &User,
    g: ClientGrant<'_>,
    now: Now,
) -> ApiResult<Tokens> {
    match grant(state, client, user, Grant::Client(g), now).await? {
        SignIn::Tokens(tokens) => Ok(tokens),
        _ => Err(ApiError::internal(
            "a code exchange was answered with a challenge",
        )),
    }
}

/// A new session for a user who has just proved who they are. `amr` lists
/// how (RFC 8176 values, space-separated).
pub async fn start_session(
    state: &AppState,
    client: &Client,
    user: &User,
    amr: &str,
    now: Now,
) -> ApiResult<SignIn> {
    let start = Grant::Start {
        amr,
        opened_by: None,
    };
    grant(state, client, user, start, now).await
}

/// The same, for a sign-in a passkey (`cred_id`) proved: removing that
/// passkey ends the session.
pub async fn start_session_by_passkey(
    state: &AppState,
    client: &Client,
    user: &User,
    amr: &str,
    cred_id: &str,
    now: Now,
) -> ApiResult<SignIn> {
    let start = Grant::Start {
        amr,
        opened_by: Some(cred_id),
    };
    grant(state, client, user, start, now).await
}

/// An access token for a personal access token's session, through the
/// same gate as a refresh. No refresh token: the script exchanges its
/// personal access token again.
pub async fn personal(
    state: &AppState,
    client: &Client,
    user: &User,
    session: &Session,
    now: Now,
) -> ApiResult<Tokens> {
    match grant(state, client, user, Grant::Personal { session }, now).await? {
        SignIn::Tokens(tokens) => Ok(tokens),
        _ => Err(ApiError::internal(
            "a personal access token was answered with a challenge",
        )),
    }
}

/// Tokens for a session that goes on, with the refresh token that now
/// stands for it.
#[allow(clippy::too_many_arguments)]
pub async fn continue_session(
    state: &AppState,
    client: &Client,
    user: &User,
    session: &Session,
    refresh_token: String,
    outcome: &'static str,
    delivery: Delivery,
    now: Now,
) -> ApiResult<Tokens> {
    let grant_kind = Grant::Continue {
        session,
        refresh_token,
        outcome,
        delivery,
    };
    match grant(state, client, user, grant_kind, now).await? {
        SignIn::Tokens(tokens) => Ok(tokens),
        // A refresh never asks for a factor: its session already passed.
        _ => Err(ApiError::internal(
            "a refresh was answered with a challenge",
        )),
    }
}

async fn grant(
    state: &AppState,
    client: &Client,
    user: &User,
    grant: Grant<'_>,
    now: Now,
) -> ApiResult<SignIn> {
    if user.disabled_at.is_some() {
        return Err(match grant {
            Grant::Start { .. } => {
                state.metrics.login("disabled");
                state
                    .audit(
                        AuditEvent::new(now.ms, "login_disabled")
                            .user(user)
                            .client(client)
                            .outcome(Outcome::Denied, "account_disabled"),
                    )
                    .await;
                ApiError::new(
                    crate::service::error::Kind::Forbidden,
                    "account_disabled",
                    "account is disabled",
                )
            }
            Grant::Client(g) => {
                state.metrics.login("disabled");
                state
                    .audit(
                        AuditEvent::new(now.ms, "login_disabled")
                            .user(user)
                            .client(client)
                            .outcome(Outcome::Denied, "account_disabled")
                            .meta(serde_json::json!({"client_id": g.client_id})),
                    )
                    .await;
                ApiError::bad_request("invalid_grant", "the account is disabled")
            }
            Grant::Continue { .. } => {
                state.metrics.refresh("disabled");
                ApiError::unauthorized("invalid_grant", "refresh token is invalid")
            }
            Grant::Personal { .. } => {
                state.metrics.login("disabled");
                ApiError::bad_request("invalid_grant", "the account is disabled")
            }
        });
    }
    if let Grant::Client(g) = &grant {
        if role_needs_second_factor(state, user) && !has_second_factor(g.amr) {
            state.metrics.login("mfa_required");
            return Err(ApiError::bad_request(
                "invalid_grant",
                "a role of this account needs a second factor: sign in again with it",
            ));
        }
    }
    if let Grant::Continue { session, .. } | Grant::Personal { session } = &grant {
        // The same gate as a sign-in: a session that began with one factor
        // gets nothing once the user holds a role that needs two (granting
        // such a role also ends these sessions; this covers any left).
        if role_needs_second_factor(state, user) && !has_second_factor(&session.amr) {
            return Err(end_one_factor_session(state, client, user, session, now).await);
        }
    }
    match grant {
        Grant::Start { amr, opened_by } => {
            // A user with a second factor gets a ticket for it instead of
            // tokens, however the first factor was proved.
            if !has_second_factor(amr) {
                let mfa = state.store.mfa_status(&user.id).await?;
                if mfa.any() {
                    return crate::service::tickets::challenge(state, client, user, amr, mfa, now)
                        .await;
                }
                if role_needs_second_factor(state, user) {
                    return crate::service::tickets::enrolment_required(
                        state, client, user, amr, now,
                    )
                    .await;
                }
            }
            let session_id = new_id();
            let refresh_token = new_refresh_token()?;
            let settings = &state.settings;
            let absolute_expires_at = now.secs() + settings.session_max_lifetime;
            state
                .store
                .create_session(&NewSession {
                    id: &session_id,
                    user_id: &user.id,
                    now: now.secs(),
                    idle_expires_at: (now.secs() + settings.session_idle_timeout)
                        .min(absolute_expires_at),
                    absolute_expires_at,
                    ip: client.ip.as_deref(),
                    user_agent: client.user_agent.as_deref(),
                    amr,
                    refresh_hash: &refresh_token_hash(&refresh_token),
                    opened_by,
                    oauth: None,
                })
                .await?;
            state.metrics.login("success");
            state
                .audit(
                    AuditEvent::new(now.ms, "login_success")
                        .user(user)
                        .client(client)
                        .session(&session_id)
                        .meta(serde_json::json!({"amr": amr})),
                )
                .await;
            notice_new_device(state, client, user, now).await;
            // Best effort: the new session stands whether or not the old
            // one could be ended now (it still expires, and is listed).
            if let Err(e) = replace_previous(state, client, &session_id, now).await {
                tracing::warn!(error = %e.message, "previous session not ended");
            }
            let delivery = if client.browser {
                Delivery::CookieOnly
            } else {
                Delivery::CookieAndBody
            };
            tokens(
                state,
                delivery,
                user,
                &session_id,
                amr,
                now.secs(),
                refresh_token,
                Bound::NONE,
                now,
            )
            .await
            .map(SignIn::Tokens)
        }
        Grant::Client(g) => {
            let refresh_token = new_refresh_token()?;
            let settings = &state.settings;
            let lifetime = g.session_ttl.map_or(settings.session_max_lifetime, |t| {
                t.min(settings.session_max_lifetime)
            });
            let absolute_expires_at = now.secs() + lifetime;
            state
                .store
                .create_session(&NewSession {
                    id: g.session_id,
                    user_id: &user.id,
                    now: now.secs(),
                    idle_expires_at: (now.secs() + settings.session_idle_timeout)
                        .min(absolute_expires_at),
                    absolute_expires_at,
                    ip: client.ip.as_deref(),
                    user_agent: client.user_agent.as_deref(),
                    amr: g.amr,
                    refresh_hash: &refresh_token_hash(&refresh_token),
                    opened_by: None,
                    oauth: Some(OAuthBinding {
                        client_id: g.client_id,
                        scope: g.scope,
                        auth_time: g.auth_time,
                        resource: g.resource,
                        access_ttl: g.access_ttl,
                        dpop_jkt: client.dpop_jkt.as_deref(),
                    }),
                })
                .await?;
            state.metrics.login("authorization_code");
            state
                .audit(
                    AuditEvent::new(now.ms, "login_success")
                        .user(user)
                        .client(client)
                        .session(g.session_id)
                        .meta(serde_json::json!({
                            "amr": g.amr,
                            "client_id": g.client_id,
                            "scope": g.scope,
                            "resource": g.resource,
                            "grant_type": "authorization_code",
                        })),
                )
                .await;
            let bound = Bound {
                client_id: Some(g.client_id),
                scope: Some(g.scope),
                resource: g.resource,
                access_ttl: g.access_ttl,
                jkt: client.dpop_jkt.as_deref(),
            };
            tokens(
                state,
                Delivery::Body,
                user,
                g.session_id,
                g.amr,
                g.auth_time,
                refresh_token,
                bound,
                now,
            )
            .await
            .map(SignIn::Tokens)
        }
        Grant::Continue {
            session,
            refresh_token,
            outcome,
            delivery,
        } => {
            state.metrics.refresh(outcome);
            // RFC 9449 §5: a proof at the refresh binds the new access
            // token (a bound session's key was checked to be the same).
            let mut bound = Bound::of(session);
            bound.jkt = bound.jkt.or(client.dpop_jkt.as_deref());
            tokens(
                state,
                delivery,
                user,
                &session.id,
                &session.amr,
                session.auth_time,
                refresh_token,
                bound,
                now,
            )
            .await
            .map(SignIn::Tokens)
        }
        Grant::Personal { session } => {
            // Never past the personal access token's own end.
            let mut bound = Bound::of(session);
            bound.jkt = client.dpop_jkt.as_deref();
            let left = session.absolute_expires_at - now.secs();
            bound.access_ttl = Some(bound.access_ttl(&state.settings).min(left).max(1));
            // A bearer secret, not a sign-in: no factor and no time of
            // authentication to claim at the edge (`mfa`, `max_auth_age`
            // rules refuse it). The gate above read the creating sign-in's.
            let access_token =
                access_token(state, user, &session.id, "pat", None, bound, now).await?;
            state.metrics.login("personal_token");
            state
                .audit(
                    AuditEvent::new(now.ms, "personal_token_used")
                        .user(user)
                        .client(client)
                        .session(&session.id)
                        .meta(serde_json::json!({"scope": session.scope})),
                )
                .await;
            Ok(SignIn::Tokens(Tokens {
                access_token,
                expires_in: bound.access_ttl(&state.settings),
                session_id: session.id.clone(),
                refresh: None,
            }))
        }
    }
}

/// A sign-in from a browser that still held another session's refresh
/// cookie: the new cookie replaces it, so that session ends rather than
/// live on unseen.
async fn replace_previous(
    state: &AppState,
    client: &Client,
    new_session: &str,
    now: Now,
) -> ApiResult<()> {
    let Some(hash) = client.replaces.as_deref() else {
        return Ok(());
    };
    let Some(found) = state.store.find_refresh(hash).await? else {
        return Ok(());
    };
    if found.session.id == new_session || !found.session.is_live(now.secs()) {
        return Ok(());
    }
    let record = state
        .store
        .revoke_session(
            &found.session.id,
            "replaced_by_sign_in",
            now.ms,
            state.revocation_expiry(now),
        )
        .await?;
    state.published(record.into_iter().collect()).await;
    Ok(())
}

/// A one-factor session of a user whose role now needs two: ended (its
/// access tokens are refused at the edge), recorded, refused.
async fn end_one_factor_session(
    state: &AppState,
    client: &Client,
    user: &User,
    session: &Session,
    now: Now,
) -> ApiError {
    state.metrics.refresh("mfa_required");
    match state
        .store
        .revoke_session(
            &session.id,
            "role_needs_second_factor",
            now.ms,
            state.revocation_expiry(now),
        )
        .await
    {
        Ok(record) => {
            let event = AuditEvent::new(now.ms, "session_ended")
                .user(user)
                .client(client)
                .session(&session.id)
                .outcome(Outcome::Denied, "role_needs_second_factor");
            state
                .sessions_ended(record.into_iter().collect(), event)
                .await
        }
        Err(e) => return ApiError::internal(e),
    }
    ApiError::unauthorized(
        "invalid_grant",
        "a role of this account needs a second factor: sign in again",
    )
}

/// Mails the user when they sign in from a device (user agent) not seen on
/// their account before; the first device of an account is not news. Best
/// effort: the sign-in waits for the outbox write but never fails for it.
async fn notice_new_device(state: &AppState, client: &Client, user: &User, now: Now) {
    let device = refresh_token_hash(client.user_agent.as_deref().unwrap_or("unknown"));
    match state.store.note_device(&user.id, &device, now.secs()).await {
        Ok(true) => {
            let mail = crate::service::mail::templates::new_device(
                &user.email,
                client.user_agent.as_deref(),
                client.ip.as_deref(),
                &crate::store::rfc3339_ms(now.ms),
            );
            if let Err(e) = crate::service::mail::send(state, mail).await {
                tracing::error!(error = %e, "new device notice not queued");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "device not recorded"),
    }
}

/// Step-up: the user proved a factor again inside a live session, which
/// now counts as authenticated at `now` with `amr`. Answers a fresh access
/// token for the same session; the refresh token is unchanged.
#[allow(clippy::too_many_arguments)]
pub async fn step_up(
    state: &AppState,
    client: &Client,
    user: &User,
    session: &Session,
    amr: &str,
    by_passkey: Option<&str>,
    now: Now,
) -> ApiResult<Tokens> {
    if user.disabled_at.is_some() {
        return Err(ApiError::unauthorized(
            "invalid_token",
            "token is no longer valid",
        ));
    }
    if role_needs_second_factor(state, user) && !has_second_factor(amr) {
        return Err(ApiError::new(
            crate::service::error::Kind::Forbidden,
            "mfa_required",
            "a role of this account needs a second factor: step up with it",
        ));
    }
    let live = state
        .store
        .step_up_session(&session.id, amr, now.secs(), by_passkey)
        .await?;
    if !live {
        return Err(ApiError::unauthorized("invalid_token", "session has ended"));
    }
    state.metrics.login("step_up");
    state
        .audit(
            AuditEvent::new(now.ms, "step_up")
                .user(user)
                .client(client)
                .session(&session.id)
                .meta(serde_json::json!({"amr": amr})),
        )
        .await;
    let access_token = access_token(
        state,
        user,
        &session.id,
        amr,
        Some(now.secs()),
        Bound::of(session),
        now,
    )
    .await?;
    Ok(Tokens {
        access_token,
        expires_in: Bound::of(session).access_ttl(&state.settings),
        session_id: session.id.clone(),
        refresh: None,
    })
}

#[allow(clippy::too_many_arguments)]
async fn tokens(
    state: &AppState,
    delivery: Delivery,
    user: &User,
    session_id: &str,
    amr: &str,
    auth_time: i64,
    refresh_token: String,
    bound: Bound<'_>,
    now: Now,
) -> ApiResult<Tokens> {
    let settings = &state.settings;
    let access_token =
        access_token(state, user, session_id, amr, Some(auth_time), bound, now).await?;
    Ok(Tokens {
        access_token,
        expires_in: bound.access_ttl(settings),
        session_id: session_id.to_string(),
        refresh: Some(Refresh {
            token: refresh_token,
            delivery,
            max_age: settings.session_idle_timeout,
        }),
    })
}

/// The OAuth client a session was opened for, and its scope: the access
/// token carries them (none for the issuer's own sessions).
#[derive(Debug, Clone, Copy)]
struct Bound<'a> {
    client_id: Option<&'a str>,
    scope: Option<&'a str>,
    /// The token's `aud` when it is for a resource (RFC 8707).
    resource: Option<&'a str>,
    /// The client's access-token lifetime, if it set one.
    access_ttl: Option<i64>,
    /// The DPoP key the tokens are bound to (`cnf.jkt`), if any.
    jkt: Option<&'a str>,
}

impl<'a> Bound<'a> {
    const NONE: Bound<'static> = Bound {
        client_id: None,
        scope: None,
        resource: None,
        access_ttl: None,
        jkt: None,
    };

    fn of(session: &'a Session) -> Self {
        Bound {
            client_id: session.client_id.as_deref(),
            scope: session.scope.as_deref(),
            resource: session.resource.as_deref(),
            access_ttl: session.access_ttl,
            jkt: session.dpop_jkt.as_deref(),
        }
    }

    /// A client's lifetime only ever shortens the issuer's.
    fn access_ttl(&self, settings: &ServeArgs) -> i64 {
        let issuer = settings.keys.access_token_ttl;
        self.access_ttl.map_or(issuer, |t| t.min(issuer))
    }
}

async fn access_token(
    state: &AppState,
    user: &User,
    session_id: &str,
    amr: &str,
    auth_time: Option<i64>,
    bound: Bound<'_>,
    now: Now,
) -> ApiResult<String> {
    let settings = &state.settings;
    let memberships = state.store.teams_of(&user.id).await?;
    // Bounded, and explicit when over the bound: a cut list would read as
    // "not a member" of the teams left out.
    // Also bounded in bytes: sidecars refuse tokens over 8 KiB.
    let bytes: usize = memberships.iter().map(|(t, r)| t.len() + r.len() + 6).sum();
    let teams_overflow =
        memberships.len() as u64 > settings.max_token_teams || bytes > MAX_TEAMS_CLAIM_BYTES;
    let teams = if teams_overflow {
        Default::default()
    } else {
        memberships.into_iter().collect()
    };
    let claims = AccessClaims {
        iss: settings.issuer_url.clone(),
        sub: user.id.clone(),
        aud: Audience::One(bound.resource.unwrap_or(&settings.audience).to_string()),
        exp: now.secs() + bound.access_ttl(settings),
        iat: now.secs(),
        nbf: Some(now.secs()),
        user_gen: user.token_generation,
        teams,
        teams_overflow,
        email_verified: user.email_verified_at.is_some()
            && bound
                .scope
                .is_none_or(|s| s.split(' ').any(|w| w == "email")),
        acr: Some(crate::domain::mfa::acr_of(amr).to_string()),
        auth_time,
        jti: new_id(),
        sid: session_id.to_string(),
        client_id: bound
            .client_id
            .map_or_else(|| settings.client_id.clone(), str::to_string),
        roles: user.roles.clone(),
        permissions: Vec::new(),
        amr: amr.split_whitespace().map(str::to_string).collect(),
        // An application sees the address only if it was allowed to.
        email: bound
            .scope
            .is_none_or(|s| s.split(' ').any(|w| w == "email"))
            .then(|| user.email.clone()),
        scope: bound.scope.map(str::to_string),
        act: None,
        cnf: bound.jkt.map(|jkt| Confirmation {
            jkt: jkt.to_string(),
        }),
    };
    let keys = state.keys.snapshot();
    mint_access_token(&keys.signing, &claims).map_err(ApiError::internal)
}
