//! GitHub from the pages: signing in, linking GitHub to the account and
//! unlinking it. The OAuth dance is `service::github`'s; the callback hands
//! its outcome here when the pages started it.

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
    let started =
        crate::service::github::start_sign_in(&state, &client, return_to.as_deref(), true);
    on_to_github(started, "Sign in with GitHub", "On to GitHub.")
}

/// A started sign-in as a page that goes on to GitHub by itself, with the
/// state cookie; not a redirect: the CSP's `form-action 'self'` holds a
/// form's redirects too, and stays strict.
fn on_to_github(
    started: Result<crate::service::github::Started, ApiError>,
    title: &str,
    message: &str,
) -> Response {
    let cookie = started.and_then(|s| {
        let cookie = crate::http::github_state::state_cookie(
            &s.sealed,
            crate::service::github::PENDING_TTL_SECS,
        )?;
        Ok((s.authorize_url, cookie))
    });
    match cookie {
        Ok((to, cookie)) => {
            let mut page = landing(title, message, &to);
            page.headers_mut().append(header::SET_COOKIE, cookie);
            page
        }
        Err(e) => refused(status_of(&e), &e.message),
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
        crate::service::github::start_link(&state, &client, &auth, form.password, None, true).await;
    on_to_github(started, "Link GitHub", "On to GitHub to approve the link.")
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
        crate::service::github::unlink(&state, &client, &auth, &provider).await,
        "Your account",
        "/auth/ui/account",
    )
    .await
}
