//! GitHub from the pages: signing in, linking GitHub to the account and
//! unlinking it. The OAuth dance is `api::github`'s; the callback hands its
//! outcome here when the pages started it.

use super::*;

/// What GitHub's callback decided, for a page to show.
pub enum GitHubOutcome {
    /// What the session-issuing path decided (tokens, or a second factor
    /// due); its refusals (a disabled account) arrive as `Failed`.
    SignedIn(SignIn),
    Linked,
    Failed(ApiError),
}

/// The page GitHub's callback shows when the pages started the sign-in.
/// `return_to` was checked when the sign-in started (and is sealed since).
pub async fn after_github(
    state: &AppState,
    outcome: GitHubOutcome,
    return_to: Option<&str>,
) -> Response {
    match outcome {
        GitHubOutcome::SignedIn(SignIn::Tokens(tokens)) => {
            let to = return_to.unwrap_or(ACCOUNT);
            with_cookies_of(
                landing("Signed in", "Signed in with GitHub.", to),
                &signed_in(state, &tokens, to),
            )
        }
        GitHubOutcome::SignedIn(SignIn::SecondFactor { ticket, .. }) => {
            page("Second factor", mfa_form(&ticket, None, return_to))
        }
        GitHubOutcome::SignedIn(SignIn::Enrol { ticket, .. }) => {
            required_enrolment(state, &ticket, return_to).await
        }
        GitHubOutcome::Linked => landing(
            "GitHub linked",
            "Your GitHub account is linked: you can sign in with it.",
            "/auth/ui/account",
        ),
        GitHubOutcome::Failed(e) => {
            let message = if e.code == "link_required" {
                // The API's text names the JSON endpoint; a person needs the page.
                "An account with this email address exists. Sign in to it, then link \
                 GitHub from your account page."
                    .to_string()
            } else {
                e.message.clone()
            };
            refused(status_of(&e), &message)
        }
    }
}

fn refused(status: StatusCode, message: &str) -> Response {
    with_status(
        page(
            "Sign in with GitHub",
            html! {
                (error_box(Some(message)))
                p { a href="/auth/ui/login" { "Back to sign-in" } " · " a href="/auth/ui/account" { "Your account" } }
            },
        ),
        status,
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct GitHubForm {
    #[serde(default)]
    return_to: Option<String>,
}

#[utoipa::path(post, path = "/auth/ui/github", operation_id = "pages_github", tag = "pages",
    summary = "Sign in with GitHub from the pages",
    request_body(content = GitHubForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "A page that goes on to GitHub", content_type = "text/html", body = String)))]
pub async fn github_sign_in(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<GitHubForm>,
) -> Response {
    let return_to = form.return_to.filter(|r| !r.is_empty());
    let started = crate::http::json::github::login_for_pages(&state, &client, return_to);
    on_to_github(started, "Sign in with GitHub", "On to GitHub.").await
}

/// The API's `{authorize_url}` and state cookie as a page that goes on to
/// GitHub by itself, not a redirect: the CSP's `form-action 'self'` holds a
/// form's redirects too, and stays strict.
async fn on_to_github(started: Result<Response, ApiError>, title: &str, message: &str) -> Response {
    let (status, cookies, body) = answer_of(started).await;
    match body["authorize_url"].as_str() {
        Some(to) if status.is_success() => with_cookies(landing(title, message, to), &cookies),
        _ => refused(status, &message_of(&body)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LinkForm {
    password: String,
}

#[utoipa::path(post, path = "/auth/ui/github/link", operation_id = "pages_github_link", tag = "pages",
    summary = "Link GitHub to this account (password first)",
    request_body(content = LinkForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "A page that goes on to GitHub", content_type = "text/html", body = String)))]
pub async fn github_link(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<LinkForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let started =
        crate::http::json::github::start_link(&state, &client, &auth, form.password, None, true)
            .await;
    on_to_github(started, "Link GitHub", "On to GitHub to approve the link.").await
}

#[utoipa::path(post, path = "/auth/ui/identities/{provider}/unlink", operation_id = "pages_unlink",
    tag = "pages", summary = "Unlink an identity (GitHub)",
    params(("provider" = String, Path, description = "The provider (github)")),
    responses((status = 303, description = "Back to the account page")))]
pub async fn unlink(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(provider): Path<String>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    back_or_error(
        crate::http::json::github::unlink(State(state.clone()), client, auth, Path(provider)).await,
        "Your account",
        "/auth/ui/account",
    )
    .await
}
