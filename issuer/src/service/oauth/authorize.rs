//! The authorization endpoint's rules (OAuth 2.1 §4.1, OIDC Core §3.1.2):
//! which requests are valid, what a signed-in browser is answered (a code,
//! a consent question, a sign-in first), and where errors go.

use oauth2::url::Url;
use serde::Deserialize;

use crate::domain::mfa::{acr_of, ACR_ONE_FACTOR, ACR_TWO_FACTORS};
use crate::domain::oauth::{consent_covers, redirect_matches, valid_challenge, valid_resource};
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
    /// RFC 8707: the one resource the access tokens are to be for.
    pub resource: Option<String>,
    /// OIDC Core 3.1.2.1: acceptable `acr` values, in order of preference.
    pub acr_values: Option<String>,
    /// Set by the issuer on its way to the sign-in page, sealed (bound to
    /// the client and the PKCE challenge, good for [`MARKER_TTL_SECS`]):
    /// when the browser comes back, its sign-in must be newer than this.
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
    /// The resource (RFC 8707) asked for: one the client may ask for.
    pub resource: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    /// `acr_values` named only `aal2` among the values the issuer knows:
    /// the sign-in must have had a second factor.
    pub needs_second_factor: bool,
    /// When the issuer sent the browser to sign in for this request (from
    /// the sealed `auth_after`).
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
    /// Ask the user whether the client may have `scope`; the form carries
    /// `token` (see [`consent_token`]).
    Consent {
        client_name: String,
        scope: Vec<String>,
        token: String,
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
    let needs_second_factor = needs_second_factor(req.acr_values.as_deref());
    if req.acr_values.as_deref().is_some_and(|a| a.len() > 512) {
        return Err(back(
            "invalid_request",
            "acr_values: at most 512 characters",
        ));
    }
    if let Some(r) = req.resource.as_deref() {
        if !(valid_resource(r) && client.audiences.iter().any(|a| a == r)) {
            return Err(back(
                "invalid_target",
                "resource: not a resource this client may ask for",
            ));
        }
    }
    let auth_after = match req.auth_after.as_deref() {
        None => None,
        Some(marker) => Some(
            open_marker(state, &client.id, &code_challenge, marker).ok_or_else(|| {
                back(
                    "invalid_request",
                    "auth_after: not the issuer's, or the sign-in took too long",
                )
            })?,
        ),
    };
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
        resource: req.resource.clone(),
        prompt,
        max_age,
        needs_second_factor,
        auth_after,
        request: req.clone(),
    })
}

/// Whether `acr_values` asks for a second factor: the values are a list of
/// acceptable ones, so `aal1` anywhere in it accepts any sign-in; values the
/// issuer does not know are voluntary (OIDC Core 3.1.2.1) and left aside.
fn needs_second_factor(acr_values: Option<&str>) -> bool {
    let known: Vec<&str> = acr_values
        .unwrap_or_default()
        .split_whitespace()
        .filter(|v| [ACR_ONE_FACTOR, ACR_TWO_FACTORS].contains(v))
        .collect();
    !known.is_empty() && !known.contains(&ACR_ONE_FACTOR)
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
    let auth = match who {
        Some(auth) if auth.user.disabled_at.is_none() && fresh(valid, auth, now.secs()) => auth,
        _ if valid.prompt == Prompt::None => {
            return Ok(back("login_required", "the user is not signed in"))
        }
        _ => return sign_in_again(state, valid, now.secs()),
    };
    if valid.needs_second_factor && acr_of(&auth.session.amr) != ACR_TWO_FACTORS {
        // A one-factor session of a user with a factor can sign in again
        // with it (once: a sign-in after the marker that still has none
        // will not get one); a user without one cannot here.
        let just_signed_in = valid
            .auth_after
            .is_some_and(|a| auth.session.auth_time >= a);
        let has_factor = state.store.mfa_status(&auth.user.id).await?.any();
        return Ok(match (has_factor, just_signed_in, valid.prompt) {
            (true, false, Prompt::None) => back(
                "login_required",
                "acr_values asks for a second factor: the user must sign in again",
            ),
            (true, false, _) => return sign_in_again(state, valid, now.secs()),
            _ => back(
                "unmet_authentication_requirements",
                "acr_values asks for a second factor, which this user has not set up",
            ),
        });
    }
    if !valid.client.first_party {
        // Asked at least once, whatever the scope (even none).
        let allowed = state.store.consent(&auth.user.id, &valid.client.id).await?;
        let covered = consent_covers(allowed.as_deref(), &valid.scope.join(" "));
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
                token: consent_token(state, valid, auth)?,
            });
        }
    }
    issue_code(state, client, valid, auth)
        .await
        .map(Answer::Redirect)
}

/// To the sign-in page, and back here after it, which must then be newer
/// than now; `prompt` stays, and only the sealed marker satisfies it.
fn sign_in_again(state: &AppState, valid: &Valid, now: i64) -> Result<Answer> {
    let mut next = valid.request.clone();
    next.auth_after = Some(seal_marker(
        state,
        &valid.client.id,
        &valid.code_challenge,
        now,
    )?);
    Ok(Answer::SignIn {
        continue_at: continue_url(&next),
    })
}

/// The user answered the consent question: allowed, a code; refused, the
/// client hears `access_denied`.
pub async fn consented(
    state: &AppState,
    client: &Client,
    valid: &Valid,
    auth: &Authenticated,
    allow: bool,
    consent_token: &str,
) -> Result<String> {
    let now = state.now();
    if !open_consent_token(state, valid, auth, consent_token) {
        return Err(Error::bad_request(
            "invalid_request",
            "this consent form is not the one the issuer showed you, or it is too old: start again",
        ));
    }
    if !fresh(valid, auth, now.secs()) {
        return Err(Error::bad_request(
            "invalid_request",
            "the sign-in is no longer recent enough for this request: start again",
        ));
    }
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
    let scope = super::consent::remember(
        state,
        &auth.user.id,
        &valid.client.id,
        valid.scope.iter().map(String::as_str),
        now.secs(),
    )
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
            resource: valid.resource.as_deref(),
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
            ("resource", &self.resource),
            ("acr_values", &self.acr_values),
            ("auth_after", &self.auth_after),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

pub const AUTHORIZE_PATH: &str = "/auth/ui/authorize";

/// How long a sign-in (or a consent form) may take.
pub const MARKER_TTL_SECS: i64 = 600;

/// Whether the browser's sign-in is recent enough for the request: newer
/// than the issuer's own marker when there is one (set on the way to the
/// sign-in page), else within `max_age`; `prompt=login` is satisfied only
/// by a sign-in after the marker.
fn fresh(valid: &Valid, auth: &Authenticated, now: i64) -> bool {
    let after = match valid.auth_after {
        Some(marker) => Some(marker),
        None if valid.prompt == Prompt::Login => return false,
        None => valid.max_age.map(|m| now - m),
    };
    after.is_none_or(|a| auth.session.auth_time >= a)
}

fn marker_aad(purpose: &str, client_id: &str, code_challenge: &str) -> String {
    format!("authorize-{purpose}:{client_id}:{code_challenge}")
}

fn seal_marker(state: &AppState, client_id: &str, code_challenge: &str, at: i64) -> Result<String> {
    seal_time(state, &marker_aad("marker", client_id, code_challenge), at)
}

/// A time sealed for one purpose (`aad`): a form's token, a marker.
pub(super) fn seal_time(state: &AppState, aad: &str, at: i64) -> Result<String> {
    let sealed = state.keys.seal(aad, at.to_string().as_bytes())?;
    Ok(auth_types::jws::b64url_encode(&sealed))
}

/// The time a sealed marker holds, if it is the issuer's, for this client
/// and challenge, and not older than [`MARKER_TTL_SECS`].
pub(super) fn open_sealed_time(state: &AppState, aad: &str, sealed: &str) -> Option<i64> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed)
        .ok()?;
    let plain = state.keys.open_sealed(aad, &bytes).ok()?;
    let at: i64 = std::str::from_utf8(&plain).ok()?.parse().ok()?;
    let now = state.now().secs();
    (now - at <= MARKER_TTL_SECS && at <= now).then_some(at)
}

fn open_marker(
    state: &AppState,
    client_id: &str,
    code_challenge: &str,
    marker: &str,
) -> Option<i64> {
    open_sealed_time(
        state,
        &marker_aad("marker", client_id, code_challenge),
        marker,
    )
}

fn consent_aad(valid: &Valid, auth: &Authenticated) -> String {
    let scope = valid.scope.join(" ");
    format!(
        "{}:{}:{scope}",
        marker_aad("consent", &valid.client.id, &valid.code_challenge),
        auth.session.id
    )
}

/// The consent form's token: bound to the browser's session, the client,
/// the PKCE challenge and the scope shown, good for [`MARKER_TTL_SECS`].
/// A form not rendered for this session (posted by any other page) fails.
pub fn consent_token(state: &AppState, valid: &Valid, auth: &Authenticated) -> Result<String> {
    seal_time(state, &consent_aad(valid, auth), state.now().secs())
}

fn open_consent_token(state: &AppState, valid: &Valid, auth: &Authenticated, token: &str) -> bool {
    open_sealed_time(state, &consent_aad(valid, auth), token).is_some()
}
