//! The authorization endpoint's rules (OAuth 2.1 §4.1, OIDC Core §3.1.2):
//! which requests are valid, what a signed-in browser is answered (a code,
//! a consent question, a sign-in first), and where errors go.

use oauth2::url::Url;
use serde::Deserialize;

use crate::domain::oauth::{redirect_matches, valid_challenge};
use crate::domain::tokens::{random_b64, refresh_token_hash};
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error, Result};
use crate::store::{AuditEvent, NewCode, OAuthClient, Outcome};
use crate::AppState;

/// How long a code may wait for its exchange (RFC 9700 §4.2.1: short).
pub const CODE_TTL_SECS: i64 = 60;

/// The authorization request's parameters, as sent (query or form).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub response_mode: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
    /// Set by the issuer on the way back from a forced sign-in
    /// (`prompt=login`, `max_age`): the sign-in must be this recent.
    pub auth_after: Option<String>,
}

/// A request whose client and redirect URI are known good: errors from
/// here on go back to the client.
#[derive(Debug, Clone)]
pub struct Valid {
    pub client: OAuthClient,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub auth_after: Option<i64>,
    /// The request as sent, to continue it after a sign-in or consent.
    pub request: AuthorizeRequest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Default,
    None,
    Login,
    Consent,
}

/// A refusal of the authorization request.
#[derive(Debug)]
pub enum Refusal {
    /// The client or the redirect URI is in doubt: never redirect (RFC
    /// 6749 §4.1.2.1), show the user the error.
    Shown(Error),
    /// Tell the client, at its redirect URI.
    Redirect(String),
}

/// What the browser is to be answered.
#[derive(Debug)]
pub enum Answer {
    /// Back to the client with a code (or an error).
    Redirect(String),
    /// Sign in first, then continue at this (relative) URL.
    SignIn { continue_at: String },
    /// Ask the user whether the client may have `scope`.
    Consent {
        client_name: String,
        scope: Vec<String>,
    },
}

fn bad(message: &str) -> Error {
    Error::bad_request("invalid_request", message)
}

/// Checks the request: the client and redirect URI first (refused on a
/// page), then everything else (refused to the client).
pub async fn validate(
    state: &AppState,
    req: &AuthorizeRequest,
) -> std::result::Result<Valid, Refusal> {
    let shown = |m: &str| Refusal::Shown(bad(m));
    let client_id = req
        .client_id
        .as_deref()
        .ok_or_else(|| shown("client_id is missing"))?;
    let client = state
        .store
        .client(client_id)
        .await
        .map_err(|e| Refusal::Shown(Error::internal(e)))?
        .ok_or_else(|| Refusal::Shown(Error::bad_request("invalid_client", "unknown client")))?;
    // Always required (OIDC Core), and matched exactly.
    let redirect_uri = req
        .redirect_uri
        .as_deref()
        .ok_or_else(|| shown("redirect_uri is missing"))?;
    if !client
        .redirect_uris
        .iter()
        .any(|r| redirect_matches(r, redirect_uri))
    {
        return Err(shown("redirect_uri is not registered for this client"));
    }
    let redirect_uri = redirect_uri.to_string();
    let back = |error: &str, description: &str| {
        Refusal::Redirect(error_redirect(
            state,
            &redirect_uri,
            error,
            description,
            req.state.as_deref(),
        ))
    };
    if req.request.is_some() {
        return Err(back(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if req.request_uri.is_some() {
        return Err(back(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    if req.response_mode.as_deref().is_some_and(|m| m != "query") {
        return Err(back("invalid_request", "response_mode: only query"));
    }
    if req.response_type.as_deref() != Some("code") {
        return Err(back(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    // PKCE with S256, for every client (OAuth 2.1; RFC 9700 §2.1.1).
    let code_challenge = match (&req.code_challenge, req.code_challenge_method.as_deref()) {
        (Some(c), Some("S256")) if valid_challenge(c) => c.clone(),
        (Some(_), Some("S256")) => {
            return Err(back(
                "invalid_request",
                "code_challenge: 43 base64url characters",
            ))
        }
        (None, _) => return Err(back("invalid_request", "code_challenge is required (PKCE)")),
        _ => {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256",
            ))
        }
    };
    let mut scope: Vec<String> = Vec::new();
    for s in req.scope.as_deref().unwrap_or("").split(' ') {
        if s.is_empty() || scope.iter().any(|x| x == s) {
            continue;
        }
        if !client.scopes.iter().any(|a| a == s) {
            return Err(back(
                "invalid_scope",
                &format!("{s} is not a scope this client may ask for"),
            ));
        }
        scope.push(s.to_string());
    }
    let prompt = match req.prompt.as_deref() {
        None | Some("") => Prompt::Default,
        Some("none") => Prompt::None,
        Some("login") => Prompt::Login,
        Some("consent") => Prompt::Consent,
        Some(_) => {
            return Err(back(
                "invalid_request",
                "prompt: none, login or consent (one of them)",
            ))
        }
    };
    let number = |v: &Option<String>, name: &str| match v.as_deref() {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| back("invalid_request", &format!("{name}: a number of seconds"))),
    };
    let max_age = number(&req.max_age, "max_age")?;
    let auth_after = number(&req.auth_after, "auth_after")?;
    for (name, v) in [("state", &req.state), ("nonce", &req.nonce)] {
        if v.as_deref().is_some_and(|s| s.len() > 512) {
            return Err(back(
                "invalid_request",
                &format!("{name}: at most 512 characters"),
            ));
        }
    }
    Ok(Valid {
        client,
        redirect_uri,
        scope,
        state: req.state.clone(),
        nonce: req.nonce.clone(),
        code_challenge,
        prompt,
        max_age,
        auth_after,
        request: req.clone(),
    })
}

/// `redirect_uri` with the error, `state` and `iss` (RFC 9207) added.
pub fn error_redirect(
    state: &AppState,
    redirect_uri: &str,
    error: &str,
    description: &str,
    client_state: Option<&str>,
) -> String {
    with_params(
        redirect_uri,
        &[
            ("error", Some(error)),
            ("error_description", Some(description)),
            ("state", client_state),
            ("iss", Some(state.settings.issuer_url.as_str())),
        ],
    )
}

fn with_params(base: &str, params: &[(&str, Option<&str>)]) -> String {
    match Url::parse(base) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    if let Some(v) = v {
                        q.append_pair(k, v);
                    }
                }
            }
            url.to_string()
        }
        // Registered URIs parse; this is unreachable in practice.
        Err(_) => base.to_string(),
    }
}

/// What a browser with this request is answered. `who` is the browser's
/// session, if it has one.
pub async fn decide(
    state: &AppState,
    client: &Client,
    valid: &Valid,
    who: Option<&Authenticated>,
) -> Result<Answer> {
    let now = state.now();
    let back = |e: &str, d: &str| {
        Answer::Redirect(error_redirect(
            state,
            &valid.redirect_uri,
            e,
            d,
            valid.state.as_deref(),
        ))
    };
    // How recent the sign-in must be.
    let mut after = valid.auth_after;
    if let Some(max_age) = valid.max_age {
        after = after.max(Some(now.secs() - max_age));
    }
    let fresh_enough = |auth: &Authenticated| after.is_none_or(|a| auth.session.auth_time >= a);
    let auth = match who {
        Some(auth)
            if auth.user.disabled_at.is_none()
                && fresh_enough(auth)
                && (valid.prompt != Prompt::Login || valid.auth_after.is_some()) =>
        {
            auth
        }
        _ if valid.prompt == Prompt::None => {
            return Ok(back("login_required", "the user is not signed in"))
        }
        _ => {
            // Back here after the sign-in, which must then be newer than now.
            let mut next = valid.request.clone();
            if valid.prompt == Prompt::Login || valid.max_age.is_some() || who.is_some() {
                next.auth_after = Some(now.secs().to_string());
            }
            if next.prompt.as_deref() == Some("login") {
                next.prompt = None;
            }
            return Ok(Answer::SignIn {
                continue_at: continue_url(&next),
            });
        }
    };
    if !valid.client.first_party {
        let allowed = state
            .store
            .consent(&auth.user.id, &valid.client.id)
            .await?
            .unwrap_or_default();
        let covered = valid
            .scope
            .iter()
            .all(|s| allowed.split(' ').any(|a| a == s));
        if !covered || valid.prompt == Prompt::Consent {
            if valid.prompt == Prompt::None {
                return Ok(back(
                    "consent_required",
                    "the user has not allowed this client",
                ));
            }
            return Ok(Answer::Consent {
                client_name: valid.client.name.clone(),
                scope: valid.scope.clone(),
            });
        }
    }
    issue_code(state, client, valid, auth)
        .await
        .map(Answer::Redirect)
}

/// The user answered the consent question: allowed, a code; refused, the
/// client hears `access_denied`.
pub async fn consented(
    state: &AppState,
    client: &Client,
    valid: &Valid,
    auth: &Authenticated,
    allow: bool,
) -> Result<String> {
    let now = state.now();
    if !allow {
        state
            .audit(
                AuditEvent::new(now.ms, "oauth_consent")
                    .by(auth)
                    .client(client)
                    .outcome(Outcome::Denied, "access_denied")
                    .meta(serde_json::json!({"client_id": valid.client.id})),
            )
            .await;
        return Ok(error_redirect(
            state,
            &valid.redirect_uri,
            "access_denied",
            "the user refused",
            valid.state.as_deref(),
        ));
    }
    // What was allowed before stays allowed.
    let before = state
        .store
        .consent(&auth.user.id, &valid.client.id)
        .await?
        .unwrap_or_default();
    let mut all: Vec<&str> = before.split(' ').filter(|s| !s.is_empty()).collect();
    for s in &valid.scope {
        if !all.contains(&s.as_str()) {
            all.push(s);
        }
    }
    let scope = all.join(" ");
    state
        .store
        .grant_consent(&auth.user.id, &valid.client.id, &scope, now.secs())
        .await?;
    state
        .audit(
            AuditEvent::new(now.ms, "oauth_consent")
                .by(auth)
                .client(client)
                .meta(serde_json::json!({"client_id": valid.client.id, "scope": scope})),
        )
        .await;
    issue_code(state, client, valid, auth).await
}

async fn issue_code(
    state: &AppState,
    client: &Client,
    valid: &Valid,
    auth: &Authenticated,
) -> Result<String> {
    let now = state.now();
    let code = random_b64(32)?;
    let scope = valid.scope.join(" ");
    state
        .store
        .insert_code(&NewCode {
            code_hash: &refresh_token_hash(&code),
            client_id: &valid.client.id,
            user_id: &auth.user.id,
            redirect_uri: &valid.redirect_uri,
            code_challenge: &valid.code_challenge,
            scope: &scope,
            nonce: valid.nonce.as_deref(),
            amr: &auth.session.amr,
            auth_time: auth.session.auth_time,
            now: now.secs(),
            expires_at: now.secs() + CODE_TTL_SECS,
        })
        .await?;
    state
        .audit(
            AuditEvent::new(now.ms, "oauth_code_issued")
                .by(auth)
                .client(client)
                .meta(serde_json::json!({"client_id": valid.client.id, "scope": scope})),
        )
        .await;
    Ok(with_params(
        &valid.redirect_uri,
        &[
            ("code", Some(&code)),
            ("state", valid.state.as_deref()),
            ("iss", Some(state.settings.issuer_url.as_str())),
        ],
    ))
}

/// The authorization endpoint's own URL (relative) for `req`.
pub fn continue_url(req: &AuthorizeRequest) -> String {
    let mut q = oauth2::url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in req.pairs() {
        q.append_pair(k, v);
    }
    format!("{AUTHORIZE_PATH}?{}", q.finish())
}

impl AuthorizeRequest {
    /// The parameters that are present, by name.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
            ("prompt", &self.prompt),
            ("max_age", &self.max_age),
            ("response_mode", &self.response_mode),
            ("request", &self.request),
            ("request_uri", &self.request_uri),
            ("auth_after", &self.auth_after),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

pub const AUTHORIZE_PATH: &str = "/auth/ui/authorize";
