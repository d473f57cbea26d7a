//! Sign in with GitHub: start (a sign-in, or a link of the signed-in
//! account), GitHub's answer (spend the state once, talk to GitHub, resolve
//! or link the account, then the one session-issuing path with
//! `amr: ["fed"]`), and unlinking.
//!
//! The state, PKCE verifier and `return_to` travel sealed in a cookie bound
//! to the browser (the adapters set it); each state is spent once in the
//! database, so any replica may serve the callback.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::clock::Now;
use crate::domain::tokens::refresh_token_hash;
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::service::github::client::{GitHub, GitHubError, Profile};
use crate::service::grant::{self, SignIn};
use crate::service::redirects::allowed_return_to;
use crate::store::{AuditEvent, Outcome, Unlink};
use crate::AppState;

mod accounts;
pub mod client;

pub const PROVIDER: &str = "github";
/// RFC 8176 has no value for "an external identity provider vouched"; `fed`
/// (federated) is the value Microsoft Entra ID and others use.
pub const AMR_FEDERATED: &str = "fed";
/// A sign-in must come back from GitHub within this time.
pub const PENDING_TTL_SECS: i64 = 600;
const SEAL_PURPOSE: &str = "github-oauth-state";

/// What the browser carries between the start and GitHub's callback.
#[derive(Serialize, Deserialize)]
pub struct Pending {
    state: String,
    verifier: String,
    pub return_to: Option<String>,
    expires_at: i64,
    /// Set when an authenticated user is linking GitHub to their account.
    link: Option<PendingLink>,
    /// Started from the hosted pages: the callback answers with a page.
    #[serde(default)]
    pub pages: bool,
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

/// A started sign-in: where to send the browser, and the sealed state it
/// must carry back (the adapter's cookie value).
pub struct Started {
    pub authorize_url: String,
    pub sealed: String,
}

fn github(state: &AppState) -> ApiResult<&GitHub> {
    state.github.as_deref().ok_or_else(|| {
        ApiError::new(
            Kind::NotFound,
            "github_disabled",
            "GitHub sign-in is not configured on this issuer",
        )
    })
}

fn checked_return_to(state: &AppState, raw: Option<&str>) -> ApiResult<Option<String>> {
    raw.map(|r| allowed_return_to(state, r)).transpose()
}

/// The pages may also come back to the authorization endpoint.
fn checked_page_return_to(state: &AppState, raw: Option<&str>) -> ApiResult<Option<String>> {
    raw.map(|r| crate::service::redirects::allowed_page_return_to(state, r))
        .transpose()
}

fn begin(
    state: &AppState,
    gh: &GitHub,
    return_to: Option<String>,
    link: Option<PendingLink>,
    pages: bool,
    replaces: Option<String>,
    now: Now,
) -> ApiResult<Started> {
    let authorize = gh.authorize()?;
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
    let sealed = state.keys.seal(SEAL_PURPOSE, &plain)?;
    Ok(Started {
        authorize_url: authorize.url,
        sealed: URL_SAFE_NO_PAD.encode(sealed),
    })
}

/// Starts a sign-in; `pages` when the hosted pages asked (the callback
/// then answers with a page). `return_to` must be on an allowed origin.
pub fn start_sign_in(
    state: &AppState,
    client: &Client,
    return_to: Option<&str>,
    pages: bool,
) -> ApiResult<Started> {
    let gh = github(state)?;
    let return_to = if pages {
        checked_page_return_to(state, return_to)?
    } else {
        checked_return_to(state, return_to)?
    };
    begin(
        state,
        gh,
        return_to,
        None,
        pages,
        client.replaces.clone(),
        state.now(),
    )
}

/// Checks the password (a stolen access token alone must not attach a
/// stranger's GitHub), then starts linking GitHub to the caller's account.
pub async fn start_link(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    password: String,
    return_to: Option<&str>,
    pages: bool,
) -> ApiResult<Started> {
    let return_to = checked_return_to(state, return_to)?;
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
    begin(state, gh, return_to, Some(link), pages, None, now)
}

/// GitHub's redirect back, as the adapter read it.
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// Why a callback failed: the answer, and the audit event naming it.
pub struct Failure {
    /// Boxed: failures travel through `Result`s and should stay small.
    pub error: Box<ApiError>,
    pub event: &'static str,
    /// Who it concerned, when known (GitHub id and login).
    pub github: Option<String>,
    /// The account it concerned, when known (a link).
    pub user_id: Option<String>,
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
                        Kind::BadGateway,
                        "upstream_unavailable",
                        "GitHub is not answering; try again later",
                    ),
                )
            }
        }
    }
}

/// What a callback achieved.
pub enum Success {
    SignedIn(SignIn),
    Linked,
}

/// A finished callback: what it achieved (or why not, already recorded in
/// the audit trail), and where the sign-in wanted to go.
pub struct Finished {
    pub outcome: Result<Success, Failure>,
    pub return_to: Option<String>,
    /// The hosted pages started it: answer with a page.
    pub pages: bool,
}

/// Completes a sign-in or link from the sealed state the browser brought
/// back (`sealed`, its cookie) and GitHub's answer. The state is spent
/// whatever happens.
pub async fn finish(
    state: &AppState,
    client: &Client,
    sealed: Option<&str>,
    q: &Callback,
) -> ApiResult<Finished> {
    let gh = github(state)?;
    let now = state.now();
    let pending = open_pending(state, sealed);
    let return_to = pending.as_ref().ok().and_then(|p| p.return_to.clone());
    let pages = pending.as_ref().is_ok_and(|p| p.pages);
    let outcome = match pending {
        Ok(pending) => {
            let client = Client {
                replaces: pending.replaces.clone().or(client.replaces.clone()),
                ..client.clone()
            };
            complete(state, gh, &client, pending, q, now).await
        }
        Err(f) => Err(f),
    };
    if let Err(failure) = &outcome {
        let mut event = AuditEvent::new(now.ms, failure.event)
            .client(client)
            .outcome(Outcome::Failure, failure.error.code)
            .meta(json!({"provider": PROVIDER, "github": failure.github}));
        if let Some(user) = &failure.user_id {
            event = event.actor(user).target(user);
        }
        // The answer matters more than its record: state.audit logs and goes on.
        state.audit(event).await;
    }
    Ok(Finished {
        outcome,
        return_to,
        pages,
    })
}

fn open_pending(state: &AppState, sealed: Option<&str>) -> Result<Pending, Failure> {
    let missing =
        || invalid_state("the sign-in expired or was started in another browser; start again");
    let sealed = URL_SAFE_NO_PAD
        .decode(sealed.ok_or_else(missing)?)
        .map_err(|_| missing())?;
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
    q: &Callback,
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
                    Kind::Forbidden,
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
                Kind::Forbidden,
                "org_not_allowed",
                "your GitHub account is not a member of an organisation or team allowed here",
            ),
        )
        .about(&profile));
    }
    if let Some(link) = &pending.link {
        accounts::link_to(state, client, link, &profile, now)
            .await
            .map_err(|f| f.for_user(&link.user_id))?;
        return Ok(Success::Linked);
    }
    let user = accounts::resolve(state, client, &profile, now).await?;
    grant::start_session(state, client, &user, AMR_FEDERATED, now)
        .await
        .map(Success::SignedIn)
        .map_err(|e| Failure::new("github_sign_in_refused", e).about(&profile))
}

/// Unlinks the caller's identity at `provider`; the sessions it opened end.
pub async fn unlink(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    provider: &str,
) -> ApiResult<()> {
    let now = state.now();
    match state
        .store
        .unlink_identity(
            &auth.user.id,
            provider,
            AMR_FEDERATED,
            now.ms,
            state.revocation_expiry(now),
        )
        .await?
    {
        Unlink::Done(identity, records) => {
            let event = AuditEvent::new(now.ms, "identity_unlinked")
                .user(&auth.user)
                .session(&auth.session.id)
                .client(client)
                .meta(json!({
                    "provider": identity.provider,
                    "subject": identity.subject,
                    "login": identity.login,
                    "sessions_ended": records.len(),
                }));
            state.sessions_ended(records, event).await;
            Ok(())
        }
        Unlink::NotLinked => Err(ApiError::not_found("no such linked identity")),
        Unlink::LastMethod => Err(ApiError::new(
            Kind::Conflict,
            "last_sign_in_method",
            "this is the account's only way to sign in",
        )),
    }
}
