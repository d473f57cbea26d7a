//! Authenticator apps: enrolment from the account page and the enrolment a
//! role requires during sign-in; recovery codes shown once.

use super::*;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CodeForm {
    code: String,
}

#[utoipa::path(post, path = "/auth/ui/mfa/totp", operation_id = "pages_totp", tag = "pages",
    summary = "Start setting up an authenticator app",
    responses((status = 200, description = "The QR code and the secret", content_type = "text/html", body = String)))]
pub async fn totp(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let enrolment = match crate::service::mfa::enrol_totp(&state, &auth).await {
        Ok(e) => e,
        Err(e) => {
            return with_status(
                page("Authenticator app", error_box(Some(&e.message))),
                status_of(&e),
            )
        }
    };
    page(
        "Authenticator app",
        totp_offer(&enrolment, "/auth/ui/mfa/totp/confirm", None, None),
    )
}

/// The secret as QR code and text, and the form that confirms it (with the
/// enrolment ticket when there is no session yet).
pub(super) fn totp_offer(
    enrolment: &crate::service::mfa::Enrolment,
    action: &str,
    ticket: Option<&str>,
    return_to: Option<&str>,
) -> Markup {
    let secret = &enrolment.secret;
    // Our own SVG, from the qrcode crate: markup we made, not input.
    let qr = enrolment.qr_svg.as_str();
    html! {
        p { "Scan the code with your authenticator app, or type the secret." }
        div.qr role="img" aria-label="QR code of the secret" { (PreEscaped(qr)) }
        p { "Secret: " code id="secret" { (secret) } }
        form method="post" action=(action) {
            @if let Some(t) = ticket { input type="hidden" name="mfa_ticket" value=(t); }
            @if let Some(r) = return_to { input type="hidden" name="return_to" value=(r); }
            label for="code" { "Code from the app" }
            input id="code" name="code" autocomplete="one-time-code" required;
            button type="submit" { "Turn on" }
        }
    }
}

/// A role that requires a second factor, and none yet: enrol with the
/// sign-in's ticket, then the sign-in completes.
pub(super) async fn required_enrolment(
    state: &AppState,
    ticket: &str,
    return_to: Option<&str>,
) -> Response {
    let enrolment = match crate::service::mfa::enrol_with_ticket(state, ticket, None).await {
        Ok(e) => e,
        Err(e) => {
            return with_status(
                page("Authenticator app", error_box(Some(&e.message))),
                status_of(&e),
            )
        }
    };
    page(
        "Set up an authenticator app",
        html! {
            p { "Your role needs a second factor before you can sign in." }
            (totp_offer(&enrolment, "/auth/ui/mfa/enrol", Some(ticket), return_to))
        },
    )
}

#[utoipa::path(post, path = "/auth/ui/mfa/enrol", operation_id = "pages_mfa_enrol", tag = "pages",
    summary = "Finish the enrolment a role requires, and the sign-in",
    request_body(content = MfaForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Signed in; the recovery codes, shown once", content_type = "text/html", body = String)))]
pub async fn mfa_enrol(
    State(state): State<AppState>,
    client: Client,
    Form(form): Form<MfaForm>,
) -> Response {
    let return_to = form.return_to.as_deref().filter(|r| !r.is_empty());
    let to = match destination(&state, return_to) {
        Ok(to) => to,
        Err(e) => return error_page("Authenticator app", e).await,
    };
    let code = form.code.trim().to_string();
    let outcome =
        crate::service::mfa::confirm_with_ticket(&state, &client, &form.mfa_ticket, Some(&code))
            .await;
    let e = match outcome {
        // Signed in: the cookies, and the codes on this page (shown once).
        Ok((SignIn::Tokens(tokens), codes)) => {
            return with_cookies_of(
                recovery_codes_page(&codes, &to),
                &signed_in(&state, &tokens, &to),
            )
        }
        Ok(_) => ApiError::internal("an enrolment was answered with a challenge"),
        Err(e) => e,
    };
    with_status(
        page(
            "Authenticator app",
            html! {
                (error_box(Some(&e.message)))
                p { a href="/auth/ui/login" { "Sign in again" } }
            },
        ),
        status_of(&e),
    )
}

/// The codes, then a link on to `to`.
pub(super) fn recovery_codes_page(codes: &[String], to: &str) -> Response {
    page(
        "Authenticator app is on",
        html! {
            p { "Keep these recovery codes somewhere safe. Each works once; they are not shown again." }
            ul id="recovery-codes" { @for c in codes { li { code { (c) } } } }
            p { a href=(to) { @if to == ACCOUNT { "Continue to your account" } @else { "Continue" } } }
        },
    )
}

#[utoipa::path(post, path = "/auth/ui/mfa/totp/confirm", operation_id = "pages_totp_confirm",
    tag = "pages", summary = "Turn the authenticator app on",
    request_body(content = CodeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The recovery codes, shown once", content_type = "text/html", body = String)))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let codes = match crate::service::mfa::confirm_totp(&state, &client, &auth, &form.code).await {
        Ok(codes) => codes,
        Err(e) => {
            return with_status(
                page(
                    "Authenticator app",
                    html! {
                        (error_box(Some(&e.message)))
                        form method="post" action="/auth/ui/mfa/totp" {
                            button type="submit" { "Start again" }
                        }
                    },
                ),
                status_of(&e),
            )
        }
    };
    recovery_codes_page(&codes, ACCOUNT)
}
