//! Sign in with GitHub: `/auth/github/login` → GitHub → `/auth/github/callback`,
//! explicit linking of an existing account, and the user's linked identities.
//!
//! The state, PKCE verifier and `return_to` travel in a sealed, `HttpOnly`
//! `__Host-` cookie bound to the browser, and each state is spent once in the
//! database (any replica may serve the callback). Sign-in ends in the one
//! session-issuing path (`grant::start_session`) with `amr: ["fed"]`.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use oauth2::url::Url;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::clock::Now;
use crate::domain::tokens::{new_id, refresh_token_hash};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Authenticated, Client};
use crate::service::github_client::{GitHub, GitHubError, Profile};
use crate::service::grant::{self, SignIn};
use crate::service::redirects::allowed_return_to;
use crate::store::{AuditEvent, Identity, LinkError, Outcome, Unlink, User};
use crate::AppState;

pub const GITHUB_COOKIE: &str = "__Host-github_oauth";
pub const PROVIDER: &str = "github";
/// RFC 8176 has no value for "an external identity provider vouched"; `fed`
/// (federated) is the value Microsoft Entra ID and others use.
pub const AMR_FEDERATED: &str = "fed";
/// A sign-in must come back from GitHub within this time.
const PENDING_TTL_SECS: i64 = 600;
const SEAL_PURPOSE: &str = "github-oauth-state";

/// What the browser carries between `/login` and `/callback`.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    verifier: String,
    return_to: Option<String>,
    expires_at: i64,
    /// Set when an authenticated user is linking GitHub to their account.
    link: Option<PendingLink>,
    /// Started from the hosted pages: the callback answers with a page.
    #[serde(default)]
    pages: bool,
    /// The browser's refresh cookie (its hash) when it started: GitHub's
    /// cross-site redirect back brings no `SameSite=Strict` cookie, so the
    /// session it stood for is named here, to be replaced by the new one.
    #[serde(default)]
    replaces: Option<String>,
}

/// A link is only as good as what proved it: it completes only while that
/// session lives and the password is the one that was checked.
#[derive(Serialize, Deserialize)]
struct PendingLink {
    user_id: String,
    session_id: String,
    password_changed_at: i64,
}

fn github(state: &AppState) -> ApiResult<&GitHub> {
    state.github.as_deref().ok_or_else(|| {
        ApiError::new(
            crate::service::error::Kind::NotFound,
            "github_disabled",
            "GitHub sign-in is not configured on this issuer",
        )
    })
}

fn checked_return_to(state: &AppState, raw: Option<&str>) -> ApiResult<Option<String>> {
    raw.map(|r| allowed_return_to(state, r)).transpose()
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") && !v.contains("text/html"))
}

fn pending_cookie(value: &str, max_age: i64) -> ApiResult<HeaderValue> {
    // Lax, not Strict: the callback is a top-level navigation from GitHub,
    // and a Strict cookie would not come with it.
    HeaderValue::from_str(&format!(
        "{GITHUB_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .map_err(ApiError::internal)
}

/// Starts a sign-in (or a link): 302 to GitHub, or `{authorize_url}` as
/// JSON for clients that asked for JSON.
#[allow(clippy::too_many_arguments)]
fn begin(
    state: &AppState,
    gh: &GitHub,
    return_to: Option<String>,
    link: Option<PendingLink>,
    json_answer: bool,
    pages: bool,
    replaces: Option<String>,
    now: Now,
) -> ApiResult<Response> {
    let authorize = gh.authorize().map_err(ApiError::internal)?;
    let pending = Pending {
        state: authorize.state,
        verifier: authorize.pkce_verifier,
        return_to,
        expires_at: now.secs() + PENDING_TTL_SECS,
        link,
        pages,
        replaces,
    };
    let plain = serde_json::to_vec(&pending).map_err(ApiError::internal)?;
    let sealed = state
        .keys
        .seal(SEAL_PURPOSE, &plain)
        .map_err(ApiError::internal)?;
    let cookie = pending_cookie(&URL_SAFE_NO_PAD.encode(sealed), PENDING_TTL_SECS)?;
    let mut response = if json_answer {
        Json(json!({"authorize_url": authorize.url})).into_response()
    } else {
        let mut r = StatusCode::FOUND.into_response();
        r.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&authorize.url).map_err(ApiError::internal)?,
        );
        r
    };
    let headers = response.headers_mut();
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    return_to: Option<String>,
}

#[utoipa::path(
    get,
    path = "/auth/github/login",
    operation_id = "github_login",
    tag = "github",
    summary = "Sign in with GitHub",
    params(LoginQuery),
    responses(
        (status = 302, description = "To GitHub's authorisation page"),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> ApiResult<Response> {
    let gh = github(&state)?;
    let return_to = checked_return_to(&state, q.return_to.as_deref())?;
    let json_answer = wants_json(&headers);
    let replaces = client.replaces;
    begin(
        &state,
        gh,
        return_to,
        None,
        json_answer,
        false,
        replaces,
        state.now(),
    )
}

/// A sign-in started from the hosted pages: to GitHub, and back to a page.
pub(crate) fn login_for_pages(
    state: &AppState,
    client: &Client,
    return_to: Option<String>,
) -> ApiResult<Response> {
    let gh = github(state)?;
    let return_to = checked_return_to(state, return_to.as_deref())?;
    let replaces = client.replaces.clone();
    begin(
        state,
        gh,
        return_to,
        None,
        true,
        true,
        replaces,
        state.now(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The account's password, proving it is the owner asking (a stolen
    /// access token alone must not attach a stranger's GitHub).
    password: String,
    #[serde(default)]
    return_to: Option<String>,
}

/// Starts linking GitHub to the signed-in account. Answers
/// `{authorize_url}` and the state cookie; the browser goes on to GitHub.
#[utoipa::path(
    post,
    path = "/auth/github/link",
    operation_id = "github_link",
    tag = "github",
    summary = "Link GitHub to this account",
    request_body = LinkRequest,
    responses(
        (status = 200, description = "The URL to send the browser to", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn link(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    ApiJson(req): ApiJson<LinkRequest>,
) -> ApiResult<Response> {
    let return_to = checked_return_to(&state, req.return_to.as_deref())?;
    start_link(&state, &client, &auth, req.password, return_to, false).await
}

/// Checks the password, then starts the link (`{authorize_url}` and the
/// state cookie); `pages` when the account page asked.
pub(crate) async fn start_link(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    password: String,
    return_to: Option<String>,
    pages: bool,
) -> ApiResult<Response> {
    let gh = github(state)?;
    let stored = Some(auth.user.password_hash.clone()).filter(|h| !h.is_empty());
    let now = state.now();
    let verified =
        crate::service::password_check::check(state, &auth.user.email, stored, password, now)
            .await?;
    if !verified.ok {
        state
            .audit(
                AuditEvent::new(now.ms, "github_link_refused")
                    .user(&auth.user)
                    .client(client)
                    .outcome(Outcome::Failure, "wrong_password"),
            )
            .await;
        return Err(ApiError::forbidden("password is incorrect"));
    }
    state
        .audit(
            AuditEvent::new(now.ms, "github_link_started")
                .user(&auth.user)
                .client(client)
                .session(&auth.session.id),
        )
        .await;
    let link = PendingLink {
        user_id: auth.user.id.clone(),
        session_id: auth.session.id.clone(),
        password_changed_at: auth.user.password_changed_at,
    };
    begin(state, gh, return_to, Some(link), true, pages, None, now)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Why a callback failed: the answer, and the audit event naming it.
struct Failure {
    /// Boxed: failures travel through `Result`s and should stay small.
    error: Box<ApiError>,
    event: &'static str,
    /// Who it concerned, when known (GitHub id and login).
    github: Option<String>,
    /// The account it concerned, when known (a link).
    user_id: Option<String>,
}

impl Failure {
    fn new(event: &'static str, error: ApiError) -> Self {
        Failure {
            error: Box::new(error),
            event,
            github: None,
            user_id: None,
        }
    }

    fn for_user(mut self, user_id: &str) -> Self {
        self.user_id = Some(user_id.to_string());
        self
    }

    fn about(mut self, profile: &Profile) -> Self {
        self.github = Some(format!("github:{} {}", profile.id, profile.login));
        self
    }
}

fn invalid_state(message: &str) -> Failure {
    Failure::new(
        "github_invalid_state",
        ApiError::bad_request("invalid_state", message.to_string()),
    )
}

impl From<GitHubError> for Failure {
    fn from(e: GitHubError) -> Self {
        match e {
            GitHubError::Rejected(code) => {
                tracing::info!(code, "GitHub refused an authorization code");
                Failure::new(
                    "github_code_rejected",
                    ApiError::bad_request(
                        "github_code_rejected",
                        "GitHub did not accept the sign-in; start again",
                    ),
                )
            }
            GitHubError::Unavailable(cause) => {
                tracing::warn!(cause, "GitHub unavailable");
                Failure::new(
                    "github_unavailable",
                    ApiError::new(
                        crate::service::error::Kind::BadGateway,
                        "upstream_unavailable",
                        "GitHub is not answering; try again later",
                    ),
                )
            }
        }
    }
}

enum Success {
    SignedIn(SignIn),
    Linked,
}

#[utoipa::path(
    get,
    path = "/auth/github/callback",
    operation_id = "github_callback",
    tag = "github",
    summary = "GitHub's redirect back",
    params(CallbackQuery),
    responses(
        (status = 302, description = "Back to the allowed `return_to`, signed in or with an error"),
        (status = 200, description = "Signed in (no `return_to`)", body = crate::http::tokens::TokenResponse),
    ),
)]
pub async fn callback(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> ApiResult<Response> {
    let gh = github(&state)?;
    let now = state.now();
    let pending = open_pending(&state, &headers);
    let return_to = pending.as_ref().ok().and_then(|p| p.return_to.clone());
    let pages = pending.as_ref().is_ok_and(|p| p.pages);
    let json_answer = wants_json(&headers) || return_to.is_none();
    let outcome = match pending {
        Ok(pending) => {
            let client = Client {
                replaces: pending.replaces.clone().or(client.replaces.clone()),
                ..client.clone()
            };
            complete(&state, gh, &client, pending, &q, now).await
        }
        Err(f) => Err(f),
    };
    if let Err(failure) = &outcome {
        let mut event = AuditEvent::new(now.ms, failure.event)
            .client(&client)
            .outcome(Outcome::Failure, failure.error.code)
            .meta(json!({"provider": PROVIDER, "github": failure.github}));
        if let Some(user) = &failure.user_id {
            event = event.actor(user).target(user);
        }
        // The answer matters more than its record: state.audit logs and goes on.
        state.audit(event).await;
    }
    let mut response = if pages {
        let outcome = match outcome {
            Ok(Success::SignedIn(tokens)) => crate::http::pages::GitHubOutcome::SignedIn(tokens),
            Ok(Success::Linked) => crate::http::pages::GitHubOutcome::Linked,
            Err(failure) => crate::http::pages::GitHubOutcome::Failed(*failure.error),
        };
        crate::http::pages::after_github(&state, outcome, return_to.as_deref()).await
    } else {
        match outcome {
            Ok(Success::SignedIn(tokens)) => match (&return_to, json_answer) {
                // A second factor is due: back to the page with the ticket in
                // the fragment (never sent to a server, so never in a log).
                // (mfa_required, or mfa_enrollment_required for a role that needs one.)
                (Some(to), false) if !matches!(tokens, SignIn::Tokens(_)) => {
                    let (error, ticket) = match &tokens {
                        SignIn::Enrol { ticket, .. } => ("mfa_enrollment_required", ticket),
                        SignIn::SecondFactor { ticket, .. } => ("mfa_required", ticket),
                        SignIn::Tokens(_) => ("mfa_required", &String::new()),
                    };
                    let to = with_param(to, "error", error);
                    let to = match Url::parse(&to) {
                        Ok(mut u) => {
                            u.set_fragment(Some(&format!("mfa_ticket={ticket}")));
                            u.to_string()
                        }
                        Err(_) => to,
                    };
                    redirect(&to)?
                }
                (Some(to), false) => redirect_carrying_cookies(to, &tokens.into_response())?,
                _ => tokens.into_response(),
            },
            Ok(Success::Linked) => match (&return_to, json_answer) {
                (Some(to), false) => redirect(&with_param(to, "linked", PROVIDER))?,
                _ => Json(json!({"linked": PROVIDER})).into_response(),
            },
            Err(failure) => match (&return_to, json_answer) {
                // Only the error code goes into the URL.
                (Some(to), false) => redirect(&with_param(to, "error", failure.error.code))?,
                _ => (*failure.error).into_response(),
            },
        }
    };
    // The state is spent whatever happened: the cookie goes.
    response
        .headers_mut()
        .append(header::SET_COOKIE, pending_cookie("", 0)?);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn open_pending(state: &AppState, headers: &HeaderMap) -> Result<Pending, Failure> {
    let missing =
        || invalid_state("the sign-in expired or was started in another browser; start again");
    let value = super::sessions::cookie_value(headers, GITHUB_COOKIE).ok_or_else(missing)?;
    let sealed = URL_SAFE_NO_PAD.decode(value).map_err(|_| missing())?;
    let plain = state
        .keys
        .open_sealed(SEAL_PURPOSE, &sealed)
        .map_err(|_| missing())?;
    serde_json::from_slice(&plain).map_err(|_| missing())
}

async fn complete(
    state: &AppState,
    gh: &GitHub,
    client: &Client,
    pending: Pending,
    q: &CallbackQuery,
    now: Now,
) -> Result<Success, Failure> {
    if pending.expires_at <= now.secs() {
        return Err(invalid_state("the sign-in took too long; start again"));
    }
    // Compared as hashes, so the comparison's timing says nothing.
    let presented = q.state.as_deref().unwrap_or("");
    if refresh_token_hash(presented) != refresh_token_hash(&pending.state) {
        return Err(invalid_state(
            "state does not match this browser's sign-in; start again",
        ));
    }
    let spent = state
        .store
        .spend_oauth_state(&refresh_token_hash(&pending.state), pending.expires_at)
        .await
        .map_err(|e| Failure::new("github_error", ApiError::internal(e)))?;
    if !spent {
        return Err(invalid_state("this sign-in was already completed"));
    }
    if let Some(error) = &q.error {
        return Err(if error == "access_denied" {
            Failure::new(
                "github_access_denied",
                ApiError::new(
                    crate::service::error::Kind::Forbidden,
                    "access_denied",
                    "GitHub sign-in was cancelled",
                ),
            )
        } else {
            Failure::new(
                "github_error",
                ApiError::bad_request("github_error", "GitHub reported an error"),
            )
        });
    }
    let code = q.code.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| {
        Failure::new(
            "github_error",
            ApiError::bad_request("invalid_request", "missing `code`"),
        )
    })?;
    // Each call has its own timeout; this bounds the whole conversation
    // (a slow GitHub answering just in time, page after page).
    let deadline = std::time::Duration::from_millis(state.settings.github.github_timeout_ms * 3);
    let talk = async {
        let token = gh.exchange(code, &pending.verifier).await?;
        let profile = gh.profile(&token).await?;
        let allowed = gh.allowed(&token).await?;
        // GitHub's token is not kept: nothing here needs it again.
        Ok::<_, GitHubError>((profile, allowed))
    };
    let (profile, allowed) = tokio::time::timeout(deadline, talk)
        .await
        .map_err(|_| GitHubError::Unavailable("sign-in took longer than the deadline".into()))??;
    if !allowed {
        return Err(Failure::new(
            "github_org_refused",
            ApiError::new(
                crate::service::error::Kind::Forbidden,
                "org_not_allowed",
                "your GitHub account is not a member of an organisation or team allowed here",
            ),
        )
        .about(&profile));
    }
    if let Some(link) = &pending.link {
        link_to(state, client, link, &profile, now)
            .await
            .map_err(|f| f.for_user(&link.user_id))?;
        return Ok(Success::Linked);
    }
    let user = resolve(state, client, &profile, now).await?;
    grant::start_session(state, client, &user, AMR_FEDERATED, now)
        .await
        .map(Success::SignedIn)
        .map_err(|e| Failure::new("github_sign_in_refused", e).about(&profile))
}

fn identity_for(user_id: &str, profile: &Profile, now: Now) -> Identity {
    Identity {
        provider: PROVIDER.into(),
        subject: profile.id.to_string(),
        user_id: user_id.to_string(),
        login: profile.login.clone(),
        email: profile.verified_email.clone(),
        linked_at: now.secs(),
        last_used_at: now.secs(),
    }
}

/// The account a GitHub identity signs in: its linked account, or a new one
/// when its verified email is nobody's. An email that belongs to an existing
/// account is never linked here (that would hand the account to whoever
/// controls the GitHub side): the owner links explicitly.
async fn resolve(
    state: &AppState,
    client: &Client,
    profile: &Profile,
    now: Now,
) -> Result<User, Failure> {
    let db = |e: sqlx::Error| Failure::new("github_error", ApiError::internal(e));
    let subject = profile.id.to_string();
    // Twice at most: a concurrent first sign-in may create the account
    // between our lookup and our insert.
    for round in 0..2 {
        if let Some((user, _)) = state
            .store
            .user_by_identity(PROVIDER, &subject)
            .await
            .map_err(db)?
        {
            state
                .store
                .touch_identity(
                    PROVIDER,
                    &subject,
                    &profile.login,
                    profile.verified_email.as_deref(),
                    now.secs(),
                )
                .await
                .map_err(db)?;
            return Ok(user);
        }
        // Normalised as registration does, so the same address is the same
        // account whichever way it arrived.
        // Only ASCII: lower-casing Unicode can fold a different address onto
        // this one (K, U+212A, becomes `k`), which GitHub never verified.
        let email = profile
            .verified_email
            .as_deref()
            .filter(|e| e.is_ascii())
            .and_then(|e| crate::service::accounts::normalize_email(e).ok());
        let Some(email) = email else {
            return Err(Failure::new(
                "github_no_verified_email",
                ApiError::new(
                    crate::service::error::Kind::Forbidden,
                    "no_verified_email",
                    "your GitHub account has no verified primary email address",
                ),
            )
            .about(profile));
        };
        let link_required = || {
            Failure::new(
                "github_link_required",
                ApiError::new(
                    crate::service::error::Kind::Conflict,
                    "link_required",
                    "an account with this email exists: sign in to it and link GitHub \
                     (POST /auth/github/link)",
                ),
            )
            .about(profile)
        };
        if state
            .store
            .user_by_email(&email)
            .await
            .map_err(db)?
            .is_some()
        {
            // The account may be this identity's, made a moment ago by a
            // concurrent first sign-in: look once more before refusing.
            if round == 0 {
                continue;
            }
            return Err(link_required());
        }
        let user = User {
            id: new_id(),
            email,
            name: profile.name.clone().filter(|n| !n.trim().is_empty()),
            password_hash: String::new(),
            roles: Vec::new(),
            created_at: now.secs(),
            password_changed_at: now.secs(),
            disabled_at: None,
            token_generation: 0,
            email_verified_at: Some(now.secs()),
            avatar_url: profile.avatar_url.clone(),
            metadata: "{}".into(),
            admin_metadata: "{}".into(),
        };
        match state
            .store
            .create_user_with_identity(&user, &identity_for(&user.id, profile, now))
            .await
        {
            Ok(()) => {
                state
                    .audit(AuditEvent::new(now.ms, "github_account_created").user(&user).client(client).meta(serde_json::json!({"provider": "github", "github_id": profile.id, "login": profile.login})))
                    .await;
                return Ok(user);
            }
            // Maybe a concurrent first sign-in of this same identity: the
            // next round finds it, or answers link_required.
            Err(LinkError::EmailTaken) => continue,
            Err(LinkError::IdentityTaken) => continue,
            Err(LinkError::ProviderTaken) => continue,
            Err(LinkError::Db(e)) => return Err(db(e)),
        }
    }
    Err(Failure::new(
        "github_link_required",
        ApiError::new(
            crate::service::error::Kind::Conflict,
            "link_required",
            "an account with this email exists: sign in to it and link GitHub \
             (POST /auth/github/link)",
        ),
    )
    .about(profile))
}

async fn link_to(
    state: &AppState,
    client: &Client,
    link: &PendingLink,
    profile: &Profile,
    now: Now,
) -> Result<(), Failure> {
    let db = |e: sqlx::Error| Failure::new("github_error", ApiError::internal(e));
    let refused = || {
        Failure::new(
            "github_link_refused",
            ApiError::forbidden(
                "the session that started this link has ended or the password changed; start again",
            ),
        )
        .about(profile)
    };
    let user_id = link.user_id.as_str();
    let user = state
        .store
        .user_by_id(user_id)
        .await
        .map_err(db)?
        .filter(|u| u.disabled_at.is_none() && u.password_changed_at == link.password_changed_at)
        .ok_or_else(refused)?;
    let session_live = state
        .store
        .session(&link.session_id)
        .await
        .map_err(db)?
        .is_some_and(|s| s.user_id == user_id && s.is_live(now.secs()));
    if !session_live {
        return Err(refused());
    }
    match state
        .store
        .link_identity(&identity_for(user_id, profile, now))
        .await
    {
        Ok(()) => {
            if user.avatar_url.is_none() && profile.avatar_url.is_some() {
                let avatar = crate::store::ProfileChange {
                    avatar_url: Some(profile.avatar_url.clone()),
                    ..Default::default()
                };
                // Cosmetic: a failure here must not undo the link.
                if let Err(e) = state.store.update_profile(user_id, &avatar).await {
                    tracing::warn!(error = %e, "could not take the avatar from GitHub");
                }
            }
            state
                .audit(AuditEvent::new(now.ms, "github_linked").user(&user).client(client).meta(serde_json::json!({"provider": "github", "github_id": profile.id, "login": profile.login})))
                .await;
            Ok(())
        }
        Err(LinkError::IdentityTaken) => Err(Failure::new(
            "github_link_refused",
            ApiError::new(
                crate::service::error::Kind::Conflict,
                "identity_in_use",
                "this GitHub account is already linked to an account",
            ),
        )
        .about(profile)),
        Err(LinkError::ProviderTaken) => Err(Failure::new(
            "github_link_refused",
            ApiError::new(
                crate::service::error::Kind::Conflict,
                "already_linked",
                "this account already has a GitHub account linked; unlink it first",
            ),
        )
        .about(profile)),
        Err(LinkError::EmailTaken) => Err(Failure::new(
            "github_error",
            ApiError::internal("email conflict while linking"),
        )),
        Err(LinkError::Db(e)) => Err(db(e)),
    }
}

fn with_param(url: &str, key: &str, value: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair(key, value);
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

fn redirect(to: &str) -> ApiResult<Response> {
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to).map_err(ApiError::internal)?,
    );
    Ok(r)
}

/// A browser sign-in ends on `return_to` with the refresh cookie set; the
/// tokens themselves never go into a URL (the page asks `/auth/refresh`).
fn redirect_carrying_cookies(to: &str, tokens: &Response) -> ApiResult<Response> {
    let mut r = redirect(to)?;
    for cookie in tokens.headers().get_all(header::SET_COOKIE) {
        r.headers_mut().append(header::SET_COOKIE, cookie.clone());
    }
    Ok(r)
}

#[utoipa::path(
    get,
    path = "/auth/identities",
    operation_id = "github_identities",
    tag = "github",
    summary = "Linked identities",
    responses(
        (status = 200, description = "Linked identities", body = crate::http::openapi::AnyObject),
    ),
    security(("bearer" = [])),
)]
pub async fn identities(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    let views = crate::service::identities::list(&state, &auth).await?;
    Ok(Json(json!({
        "identities": views,
        "has_password": auth.user.has_password(),
    })))
}

#[utoipa::path(
    delete,
    path = "/auth/identities/{provider}",
    operation_id = "github_unlink",
    tag = "github",
    summary = "Unlink an identity",
    params(("provider" = String, Path, description = "The provider (github)")),
    responses(
        (status = 204, description = "Unlinked"),
    ),
    security(("bearer" = [])),
)]
pub async fn unlink(
    State(state): State<AppState>,
    client: Client,
    auth: Authenticated,
    Path(provider): Path<String>,
) -> ApiResult<Response> {
    let now = state.now();
    match state
        .store
        .unlink_identity(
            &auth.user.id,
            &provider,
            AMR_FEDERATED,
            now.ms,
            state.revocation_expiry(now),
        )
        .await
        .map_err(ApiError::internal)?
    {
        Unlink::Done(identity, records) => {
            let ended = records.len();
            state.published(records).await;
            state
                .audit(
                    AuditEvent::new(now.ms, "identity_unlinked")
                        .user(&auth.user)
                        .session(&auth.session.id)
                        .client(&client)
                        .meta(json!({
                            "provider": identity.provider,
                            "subject": identity.subject,
                            "login": identity.login,
                            "sessions_ended": ended,
                        })),
                )
                .await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Unlink::NotLinked => Err(ApiError::not_found("no such linked identity")),
        Unlink::LastMethod => Err(ApiError::new(
            crate::service::error::Kind::Conflict,
            "last_sign_in_method",
            "this is the account's only way to sign in",
        )),
    }
}
