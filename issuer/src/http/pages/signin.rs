//! Signing in: password, the second factor, resuming a session, registering,
//! and the forgotten-password form. A sign-in may carry `return_to` (an
//! allow-listed URL, checked again at every step: it travels in the page)
//! and ends there instead of on the account page.

use super::*;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReturnQuery {
    /// Where to go once signed in: a URL on an allowed origin
    /// (`--allowed-return-origins`).
    pub(super) return_to: Option<String>,
}

/// `return_to` as a query string for our own links, or nothing.
fn carry(return_to: Option<&str>) -> String {
    return_to
        .map(|r| format!("?return_to={}", encode_component(r)))
        .unwrap_or_default()
}

fn return_field(return_to: Option<&str>) -> Markup {
    html! { @if let Some(r) = return_to { input type="hidden" name="return_to" value=(r); } }
}

struct LoginView<'a> {
    error: Option<&'a str>,
    email: &'a str,
    resume: bool,
    github: bool,
    return_to: Option<&'a str>,
}

fn login_form(v: LoginView<'_>) -> Markup {
    let carried = carry(v.return_to);
    html! {
        (error_box(v.error))
        @if v.resume {
            form method="post" action={ "/auth/ui/resume" (carried) } {
                button type="submit" { "Continue where you left off" }
            }
        }
        form method="post" action="/auth/ui/login" {
            (return_field(v.return_to))
            label for="email" { "Email" }
            input id="email" name="email" type="email" autocomplete="username" required value=(v.email);
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
        @if v.github {
            // A form, not a link: starting a sign-in is a change, so only
            // our own pages may start one (the CSRF check on /auth/ui/).
            form method="post" action="/auth/ui/github" {
                (return_field(v.return_to))
                button type="submit" { "Sign in with GitHub" }
            }
        }
        p { button type="button" data-passkey="sign-in" data-return-to=[v.return_to] hidden { "Sign in with a passkey" } }
        p.error id="passkey-error" role="alert" hidden {}
        p { a href="/auth/ui/forgot" { "Forgot your password?" } " · " a href={ "/auth/ui/register" (carried) } { "Create an account" } }
    }
}

/// The sign-in page again, saying what went wrong.
fn login_again(
    state: &AppState,
    status: StatusCode,
    message: &str,
    email: &str,
    return_to: Option<&str>,
) -> Response {
    let view = LoginView {
        error: Some(message),
        email,
        resume: false,
        github: state.github.is_some(),
        return_to,
    };
    with_status(page("Sign in", login_form(view)), status)
}

#[utoipa::path(get, path = "/auth/ui/login", operation_id = "pages_login_page", tag = "pages",
    summary = "Sign-in page", params(ReturnQuery),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
    ))]
pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ReturnQuery>,
) -> Response {
    let return_to = q.return_to.as_deref().filter(|r| !r.is_empty());
    if let Err(e) = destination(&state, return_to) {
        // Said at once, not after the password: and the page goes on without it.
        return login_again(&state, status_of(&e), &e.message, "", None);
    }
    let view = LoginView {
        error: None,
        email: "",
        resume: cookie_value(&headers, REFRESH_COOKIE).is_some(),
        github: state.github.is_some(),
        return_to,
    };
    page("Sign in", login_form(view))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    return_to: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct MfaForm {
    pub(super) mfa_ticket: String,
    pub(super) code: String,
    #[serde(default)]
    pub(super) return_to: Option<String>,
}

pub(super) fn mfa_form(ticket: &str, error: Option<&str>, return_to: Option<&str>) -> Markup {
    html! {
        (error_box(error))
        p { "Enter the 6-digit code from your authenticator app, or a recovery code." }
        form method="post" action="/auth/ui/mfa" {
            input type="hidden" name="mfa_ticket" value=(ticket);
            (return_field(return_to))
            label for="code" { "Code" }
            input id="code" name="code" autocomplete="one-time-code" required autofocus;
            button type="submit" { "Verify" }
        }
        // Completes the same ticket (passkeys::login_finish with mfa_ticket).
        p { button type="button" data-passkey="second-factor" data-ticket=(ticket) data-return-to=[return_to] hidden { "Use a passkey instead" } }
        p.error id="passkey-error" role="alert" hidden {}
    }
}

/// What a sign-in leads to: signed in (to `to`), a second factor, the
/// enrolment a role requires, or the sign-in page with the reason.
pub(super) async fn after_sign_in(
    state: &AppState,
    outcome: Result<SignIn, ApiError>,
    email: &str,
    return_to: Option<&str>,
    to: &str,
) -> Response {
    match outcome {
        Ok(SignIn::Tokens(tokens)) => signed_in(state, &tokens, to),
        Ok(SignIn::SecondFactor { ticket, .. }) => {
            page("Second factor", mfa_form(&ticket, None, return_to))
        }
        Ok(SignIn::Enrol { ticket, .. }) => required_enrolment(state, &ticket, return_to).await,
        // A delayed sign-in keeps its `Retry-After` on the page.
        Err(e) => with_retry_after(
            login_again(state, status_of(&e), &e.message, email, return_to),
            e.retry_after,
        ),
    }
}

#[utoipa::path(post, path = "/auth/ui/login", operation_id = "pages_login", tag = "pages",
    summary = "Sign in from the page",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: to the account page"),
        (status = 200, description = "The second-factor page, or on to `return_to`", content_type = "text/html", body = String),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<LoginForm>,
) -> Response {
    let return_to = form.return_to.as_deref().filter(|r| !r.is_empty());
    let to = match destination(&state, return_to) {
        Ok(to) => to,
        Err(e) => return login_again(&state, status_of(&e), &e.message, &form.email, None),
    };
    let outcome =
        crate::service::accounts::login(&state, &client, &form.email, form.password).await;
    after_sign_in(&state, outcome, &form.email, return_to, &to).await
}

#[utoipa::path(post, path = "/auth/ui/mfa", operation_id = "pages_mfa", tag = "pages",
    summary = "Complete a sign-in with a code",
    request_body(content = MfaForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: to the account page"),
    ))]
pub async fn mfa(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<MfaForm>,
) -> Response {
    let return_to = form.return_to.as_deref().filter(|r| !r.is_empty());
    let to = match destination(&state, return_to) {
        Ok(to) => to,
        Err(e) => return error_page("Second factor", e).await,
    };
    let code = form.code.trim().to_string();
    // A recovery code is long and dashed; a TOTP code is six digits.
    let recovery = code.len() > 8;
    let totp = (!recovery).then(|| code.clone());
    let recovery_code = recovery.then_some(code);
    let outcome =
        crate::service::mfa::verify(&state, &client, &form.mfa_ticket, &totp, &recovery_code).await;
    let e = match outcome {
        Ok(SignIn::Tokens(tokens)) => return signed_in(&state, &tokens, &to),
        // A completed second factor never asks for another.
        Ok(_) => ApiError::internal("a second factor was answered with a challenge"),
        Err(e) => e,
    };
    with_status(
        page(
            "Second factor",
            mfa_form(&form.mfa_ticket, Some(&e.message), return_to),
        ),
        status_of(&e),
    )
}

#[utoipa::path(post, path = "/auth/ui/resume", operation_id = "pages_resume", tag = "pages",
    summary = "Continue the session of the refresh cookie", params(ReturnQuery),
    responses((status = 303, description = "To the account page (or `return_to`), or to sign-in")))]
pub async fn resume(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Query(q): Query<ReturnQuery>,
) -> Response {
    let to = match destination(&state, q.return_to.as_deref().filter(|r| !r.is_empty())) {
        Ok(to) => to,
        Err(e) => return error_page("Sign in", e).await,
    };
    match refresh_cookie_session(&state, &client, &headers).await {
        Some(tokens) => signed_in(&state, &tokens, &to),
        None => signed_out(),
    }
}

#[utoipa::path(get, path = "/auth/ui/forgot", operation_id = "pages_forgot", tag = "pages",
    summary = "Forgot-password page",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub async fn forgot() -> Response {
    page(
        "Forgot your password?",
        html! {
            p { "We will mail a link to reset it, if the address has an account." }
            // The API itself answers forms with a page.
            form method="post" action="/auth/password/forgot" {
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="username" required;
                button type="submit" { "Send the link" }
            }
            p { a href="/auth/ui/login" { "Back to sign-in" } }
        },
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterForm {
    email: String,
    password: String,
    name: Option<String>,
    #[serde(default)]
    return_to: Option<String>,
}

fn register_form(error: Option<&str>, email: &str, return_to: Option<&str>) -> Markup {
    html! {
        (error_box(error))
        form method="post" action="/auth/ui/register" {
            (return_field(return_to))
            label for="name" { "Name (optional)" }
            input id="name" name="name" autocomplete="name";
            label for="email" { "Email" }
            input id="email" name="email" type="email" autocomplete="username" required value=(email);
            label for="password" { "Password (at least 8 characters)" }
            input id="password" name="password" type="password" autocomplete="new-password" minlength="8" required;
            button type="submit" { "Create account" }
        }
        p { a href={ "/auth/ui/login" (carry(return_to)) } { "I have an account" } }
    }
}

#[utoipa::path(get, path = "/auth/ui/register", operation_id = "pages_register_page", tag = "pages",
    summary = "Registration page", params(ReturnQuery),
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub async fn register_page(
    State(state): State<AppState>,
    Query(q): Query<ReturnQuery>,
) -> Response {
    // An unusable return_to is dropped here; sign-in says why.
    let return_to = q
        .return_to
        .as_deref()
        .filter(|r| !r.is_empty() && destination(&state, Some(r)).is_ok());
    page("Create an account", register_form(None, "", return_to))
}

#[utoipa::path(post, path = "/auth/ui/register", operation_id = "pages_register", tag = "pages",
    summary = "Create an account and sign in",
    request_body(content = RegisterForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in: to the account page")))]
pub async fn register(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<RegisterForm>,
) -> Response {
    let return_to = form.return_to.filter(|r| !r.is_empty());
    // Checked before the account exists, not only at the sign-in after.
    if let Err(e) = destination(&state, return_to.as_deref()) {
        return with_status(
            page(
                "Create an account",
                register_form(Some(&e.message), &form.email, None),
            ),
            status_of(&e),
        );
    }
    let name = form.name.filter(|n| !n.trim().is_empty());
    let registered = crate::service::accounts::register(
        &state,
        &client,
        &form.email,
        form.password.clone(),
        name,
    )
    .await;
    let registered = match registered {
        Ok(r) => r,
        Err(e) => {
            return with_status(
                page(
                    "Create an account",
                    register_form(Some(&e.message), &form.email, return_to.as_deref()),
                ),
                status_of(&e),
            )
        }
    };
    if matches!(registered, crate::service::accounts::Registered::Quiet) {
        // Quiet registration: nothing here may tell a new address from a
        // taken one, so no sign-in follows.
        return page(
            "Check your mail",
            html! { p { "We sent a mail to the address you gave. Follow it, then " a href="/auth/ui/login" { "sign in" } "." } },
        );
    }
    login(
        State(state),
        client,
        Form(LoginForm {
            email: form.email,
            password: form.password,
            return_to,
        }),
    )
    .await
}
