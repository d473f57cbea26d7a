//! Personal access tokens on the account page: the list with a revoke
//! button each, a form to create one, and the page that shows a new token
//! its one time.

use super::*;
use crate::service::pats::{self, NewPersonalToken, PersonalTokenView};

/// The account page's section.
pub(super) fn section(tokens: &[PersonalTokenView], max_days: i64) -> Markup {
    html! {
        h2 { "Personal access tokens" }
        p { "For scripts and CI: exchange one at the token endpoint for a short access token (see the docs). It ends when you revoke it, change your password or sign out everywhere." }
        @if tokens.is_empty() { p { "No personal access tokens." } }
        ul id="tokens" {
            @for t in tokens {
                @let id = t.id.as_str();
                li data-token=(id) {
                    strong { (t.name) } " — " code { (t.scope) }
                    " — expires " (utc_date(t.expires_at))
                    @match t.last_used_at {
                        Some(at) => { ", last used " (utc_date(at)) }
                        None => { ", never used" }
                    }
                    " "
                    form.inline method="post" action={ "/auth/ui/tokens/" (id) "/revoke" } {
                        button type="submit" aria-label={ "Revoke token " (t.name) } { "Revoke" }
                    }
                }
            }
        }
        form method="post" action="/auth/ui/tokens" {
            label for="token_name" { "Token name" }
            input id="token_name" name="name" maxlength="64" required;
            label for="token_scope" { "Scopes (separated by spaces)" }
            input id="token_scope" name="scope" placeholder="notes:read" required;
            label for="token_days" { "Expires in (days, at most " (max_days) ")" }
            input id="token_days" name="expires_in_days" type="number" min="1" max=(max_days) value=(30.min(max_days)) required;
            button type="submit" { "Create token" }
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenForm {
    name: String,
    scope: String,
    expires_in_days: i64,
}

#[utoipa::path(post, path = "/auth/ui/tokens", operation_id = "pages_token_create", tag = "pages",
    summary = "Create a personal access token (shown once)",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The new token, this once", content_type = "text/html", body = String)))]
pub async fn token_create(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    // The answer holds the secret: only a navigation (the user's own form
    // submission) gets it, never a script's fetch on this origin, which
    // could read the page.
    if headers
        .get("sec-fetch-mode")
        .is_some_and(|m| m.as_bytes() != b"navigate")
    {
        return error_page(
            "Token not created",
            ApiError::new(
                crate::service::error::Kind::Forbidden,
                "navigation_required",
                "create tokens with the form on the account page",
            ),
        )
        .await;
    }
    let asked = NewPersonalToken {
        name: form.name,
        scope: form.scope,
        expires_in_days: Some(form.expires_in_days),
    };
    match pats::create(&state, &client, &auth, asked).await {
        Ok((token, view)) => page(
            "Token created",
            html! {
                p { "Your new token " strong { (view.name) } " (" code { (view.scope) } "), until " (utc_date(view.expires_at)) ". Copy it now: it is not shown again." }
                p { code id="new-token" { (token) } }
                p { a href=(ACCOUNT) { "Back to your account" } }
            },
        ),
        Err(e) => error_page("Token not created", e).await,
    }
}

#[utoipa::path(post, path = "/auth/ui/tokens/{id}/revoke", operation_id = "pages_token_revoke",
    tag = "pages", summary = "Revoke a personal access token",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 303, description = "Back to the account page")))]
pub async fn token_revoke(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    back_or_error(
        pats::revoke(&state, &client, &auth, &id).await,
        "Your account",
        ACCOUNT,
    )
    .await
}
