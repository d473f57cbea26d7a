//! Signing in: password, the second factor, resuming a session, registering,
//! and the forgotten-password form.

use super::*;

fn login_form(error: Option<&str>, email: &str, resume: bool, github: bool) -> Markup {
    html! {
        (error_box(error))
        @if resume {
            form method="post" action="/auth/ui/resume" {
                button type="submit" { "Continue where you left off" }
            }
        }
        form method="post" action="/auth/ui/login" {
            label for="email" { "Email" }
            input id="email" name="email" type="email" autocomplete="username" required value=(email);
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
        @if github {
            p { a href="/auth/ui/github" { "Sign in with GitHub" } }
        }
        p { button type="button" data-passkey="sign-in" hidden { "Sign in with a passkey" } }
        p.error id="passkey-error" role="alert" hidden {}
        p { a href="/auth/ui/forgot" { "Forgot your password?" } " · " a href="/auth/ui/register" { "Create an account" } }
    }
}

#[utoipa::path(get, path = "/auth/ui/login", operation_id = "pages_login_page", tag = "pages",
    summary = "Sign-in page",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let resume = cookie_value(&headers, REFRESH_COOKIE).is_some();
    page(
        "Sign in",
        login_form(None, "", resume, state.github.is_some()),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    email: String,
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct MfaForm {
    pub(super) mfa_ticket: String,
    pub(super) code: String,
}

pub(super) fn mfa_form(ticket: &str, error: Option<&str>) -> Markup {
    html! {
        (error_box(error))
        p { "Enter the 6-digit code from your authenticator app, or a recovery code." }
        form method="post" action="/auth/ui/mfa" {
            input type="hidden" name="mfa_ticket" value=(ticket);
            label for="code" { "Code" }
            input id="code" name="code" autocomplete="one-time-code" required autofocus;
            button type="submit" { "Verify" }
        }
    }
}

#[utoipa::path(post, path = "/auth/ui/login", operation_id = "pages_login", tag = "pages",
    summary = "Sign in from the page",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: to the account page"),
        (status = 200, description = "The second-factor page", content_type = "text/html", body = String),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<LoginForm>,
) -> Response {
    let request = crate::api::auth::LoginRequest {
        email: form.email.clone(),
        password: form.password,
    };
    let response = crate::api::auth::login(State(state.clone()), client, ApiJson(request))
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, cookies, body) = json_of(response).await;
    if status.is_success() {
        return signed_in(&state, cookies, &body);
    }
    if body["error"] == "mfa_required" {
        let ticket = body["mfa_ticket"].as_str().unwrap_or_default();
        return page("Second factor", mfa_form(ticket, None));
    }
    if body["error"] == "mfa_enrollment_required" {
        let ticket = body["mfa_ticket"].as_str().unwrap_or_default();
        return required_enrolment(&state, ticket).await;
    }
    with_status(
        page(
            "Sign in",
            login_form(
                Some(&message_of(&body)),
                &form.email,
                false,
                state.github.is_some(),
            ),
        ),
        status,
    )
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
    let code = form.code.trim().to_string();
    // A recovery code is long and dashed; a TOTP code is six digits.
    let recovery = code.len() > 8;
    let request = crate::api::mfa::VerifyRequest {
        mfa_ticket: form.mfa_ticket.clone(),
        code: (!recovery).then(|| code.clone()),
        recovery_code: recovery.then_some(code),
    };
    let response = crate::api::mfa::verify(State(state.clone()), client, ApiJson(request))
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, cookies, body) = json_of(response).await;
    if status.is_success() {
        return signed_in(&state, cookies, &body);
    }
    with_status(
        page(
            "Second factor",
            mfa_form(&form.mfa_ticket, Some(&message_of(&body))),
        ),
        status,
    )
}

#[utoipa::path(post, path = "/auth/ui/resume", operation_id = "pages_resume", tag = "pages",
    summary = "Continue the session of the refresh cookie",
    responses((status = 303, description = "To the account page, or to sign-in")))]
pub async fn resume(State(state): State<AppState>, client: Client, headers: HeaderMap) -> Response {
    let response = crate::api::sessions::refresh(
        State(state.clone()),
        client,
        headers,
        axum::body::Bytes::new(),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    let (status, cookies, body) = json_of(response).await;
    if status.is_success() {
        signed_in(&state, cookies, &body)
    } else {
        signed_out()
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
}

fn register_form(error: Option<&str>, email: &str) -> Markup {
    html! {
        (error_box(error))
        form method="post" action="/auth/ui/register" {
            label for="name" { "Name (optional)" }
            input id="name" name="name" autocomplete="name";
            label for="email" { "Email" }
            input id="email" name="email" type="email" autocomplete="username" required value=(email);
            label for="password" { "Password (at least 8 characters)" }
            input id="password" name="password" type="password" autocomplete="new-password" minlength="8" required;
            button type="submit" { "Create account" }
        }
        p { a href="/auth/ui/login" { "I have an account" } }
    }
}

#[utoipa::path(get, path = "/auth/ui/register", operation_id = "pages_register_page", tag = "pages",
    summary = "Registration page",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub async fn register_page() -> Response {
    page("Create an account", register_form(None, ""))
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
    let request = crate::api::auth::RegisterRequest {
        email: form.email.clone(),
        password: form.password.clone(),
        name: form.name.filter(|n| !n.trim().is_empty()),
    };
    let response =
        crate::api::auth::register(State(state.clone()), client.clone(), ApiJson(request))
            .await
            .unwrap_or_else(IntoResponse::into_response);
    let (status, _, body) = json_of(response).await;
    if !status.is_success() {
        return with_status(
            page(
                "Create an account",
                register_form(Some(&message_of(&body)), &form.email),
            ),
            status,
        );
    }
    login(
        State(state),
        client,
        Form(LoginForm {
            email: form.email,
            password: form.password,
        }),
    )
    .await
}
