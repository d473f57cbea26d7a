//! The account page: profile, sessions, sign-out, password, passkeys and
//! linked identities.

use super::*;

#[utoipa::path(get, path = "/auth/ui/account", operation_id = "pages_account", tag = "pages",
    summary = "Account page: sessions, second factors",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn account(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let email = auth.user.email.clone();
    let admin = auth.user.roles.iter().any(|r| r == "admin");
    let current = auth.session.id.clone();
    let list = crate::service::sessions::list(&state, &auth)
        .await
        .unwrap_or_default();
    let totp = crate::service::mfa::status(&state, &auth)
        .await
        .map(|f| f.totp)
        .unwrap_or(false);
    let linked = crate::service::identities::list(&state, &auth)
        .await
        .unwrap_or_default();
    let name = auth.user.name.clone().unwrap_or_default();
    let verified = auth.user.email_verified_at.is_some();
    let has_password = auth.user.has_password();
    let passkeys = crate::service::passkeys::list(&state, &auth)
        .await
        .unwrap_or_default();
    let apps = crate::service::oauth::consent::connected(&state, &auth)
        .await
        .unwrap_or_default();
    let tokens = crate::service::pats::list(&state, &auth)
        .await
        .unwrap_or_default();
    page(
        "Your account",
        html! {
            @if admin { nav { a href="/auth/ui/admin" { "Administration" } } }
            p {
                "Signed in as " strong { (email) }
                @if verified { " (verified)." } @else { " (not verified yet: see the mail we sent)." }
            }
            form method="post" action="/auth/ui/logout" {
                button type="submit" { "Sign out" }
            }
            h2 { "Profile" }
            form method="post" action="/auth/ui/profile" {
                label for="name" { "Name" }
                input id="name" name="name" autocomplete="name" maxlength="200" value=(name);
                button type="submit" { "Save" }
            }
            h2 { "Active sessions" }
            table {
                thead { tr { th { "Device" } th { "IP" } th { "Last seen" } th { span.visually-hidden { "Action" } } } }
                tbody {
                    @for s in &list {
                        @let id = s.id.as_str();
                        tr data-session=(id) {
                            td { (s.user_agent.as_deref().unwrap_or("unknown device")) }
                            td { (s.ip.as_deref().unwrap_or("")) }
                            @let seen = crate::domain::clock::rfc3339_ms(s.last_used_at * 1000);
                            td { time datetime=(seen) { (seen.get(..16).unwrap_or(&seen).replace('T', " ")) " UTC" } }
                            td {
                                @if id == current {
                                    "this session"
                                } @else {
                                    form method="post" action={ "/auth/ui/sessions/" (id) "/end" } {
                                        button type="submit" aria-label={ "End the session of " (s.user_agent.as_deref().unwrap_or("an unknown device")) " at " (s.ip.as_deref().unwrap_or("an unknown address")) } { "End" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Passkeys" }
            ul id="passkeys" {
                @for k in passkeys.iter() {
                    @let id = k.id.as_str();
                    @let label = k.name.as_str();
                    li {
                        form.inline method="post" action={ "/auth/ui/passkeys/" (id) "/rename" } {
                            label.visually-hidden for={ "passkey-" (id) } { "Name of passkey " (label) }
                            input.short id={ "passkey-" (id) } name="name" value=(label) maxlength="100" required;
                            button type="submit" aria-label={ "Rename passkey " (label) } { "Rename" }
                        }
                        form.inline method="post" action={ "/auth/ui/passkeys/" (id) "/delete" } {
                            button type="submit" aria-label={ "Remove passkey " (label) } { "Remove" }
                        }
                    }
                }
            }
            p { button type="button" data-passkey="add" hidden { "Add a passkey" } }
            p.error id="passkey-error" role="alert" hidden {}
            h2 { "Password" }
            form method="post" action="/auth/ui/password" {
                label for="current_password" { "Current password" }
                input id="current_password" name="current_password" type="password" autocomplete="current-password" required;
                label for="new_password" { "New password" }
                input id="new_password" name="new_password" type="password" autocomplete="new-password" minlength="8" required;
                button type="submit" { "Change password" }
            }
            h2 { "Linked accounts" }
            ul id="identities" {
                @for i in &linked {
                    @let provider = i.provider.as_str();
                    li {
                        "GitHub: " strong { (i.login) } " "
                        form.inline method="post" action={ "/auth/ui/identities/" (provider) "/unlink" } {
                            button type="submit" aria-label={ "Unlink " (provider) } { "Unlink" }
                        }
                    }
                }
            }
            @if linked.is_empty() && state.github.is_some() {
                @if has_password {
                    form method="post" action="/auth/ui/github/link" {
                        label for="link_password" { "Your password, to link GitHub" }
                        input id="link_password" name="password" type="password" autocomplete="current-password" required;
                        button type="submit" { "Link GitHub" }
                    }
                } @else {
                    p { "No account linked." }
                }
            }
            h2 { "Connected applications" }
            @if apps.is_empty() {
                p { "No application has access to your account." }
            }
            ul id="apps" {
                @for a in &apps {
                    li {
                        strong { (a.name) } " (" code { (a.client_id) } ")"
                        @if let Some(scope) = &a.scope { " — " (scope) }
                        " "
                        form.inline method="post" action={ "/auth/ui/apps/" (a.client_id) "/disconnect" } {
                            button type="submit" aria-label={ "Disconnect " (a.name) } { "Disconnect" }
                        }
                    }
                }
            }
            (super::tokens::section(&tokens, state.settings.pat_max_lifetime_days))
            h2 { "Two-factor authentication" }
            @if totp {
                p id="totp-status" { "An authenticator app is set up." }
            } @else {
                p id="totp-status" { "No authenticator app yet." }
                form method="post" action="/auth/ui/mfa/totp" {
                    button type="submit" { "Set up an authenticator app" }
                }
            }
        },
    )
}

#[utoipa::path(post, path = "/auth/ui/logout", operation_id = "pages_logout", tag = "pages",
    summary = "Sign out", responses((status = 303, description = "To the sign-in page")))]
pub async fn logout(State(state): State<AppState>, client: Client, headers: HeaderMap) -> Response {
    let auth = match page_auth(&state, &headers).await {
        Ok(auth) => Some(auth),
        // The page token has expired: the refresh cookie still names the
        // session, which must end too (a shared computer).
        Err(_) => refreshed_auth(&state, &client, &headers).await,
    };
    if let Some(auth) = auth {
        let _ = crate::service::sessions::logout(&state, &client, &auth).await;
    }
    signed_out()
}

/// The session of the refresh cookie, through one rotation.
async fn refreshed_auth(
    state: &AppState,
    client: &Client,
    headers: &HeaderMap,
) -> Option<Authenticated> {
    let tokens = refresh_cookie_session(state, client, headers).await?;
    // Straight from our own rotation of the refresh cookie.
    crate::service::context::authenticate(state, &tokens.access_token, state.now())
        .await
        .ok()
}

#[utoipa::path(post, path = "/auth/ui/sessions/{id}/end", operation_id = "pages_end_session",
    tag = "pages", summary = "End one of your sessions",
    params(("id" = String, Path, description = "The session's id")),
    responses((status = 303, description = "Back to the account page")))]
pub async fn end_session(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    back_or_error(
        crate::service::sessions::delete(&state, &client, &auth, &id).await,
        "Your account",
        "/auth/ui/account",
    )
    .await
}

#[utoipa::path(post, path = "/auth/ui/apps/{client_id}/disconnect", operation_id = "pages_disconnect_app",
    tag = "pages", summary = "Disconnect an application (its sessions end)",
    params(("client_id" = String, Path, description = "The application")),
    responses((status = 303, description = "Back to the account page")))]
pub async fn disconnect_app(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    back_or_error(
        crate::service::oauth::consent::disconnect(&state, &client, &auth, &client_id).await,
        "Your account",
        "/auth/ui/account",
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
}

#[utoipa::path(post, path = "/auth/ui/password", operation_id = "pages_password", tag = "pages",
    summary = "Change the password (ends every session)",
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Changed: sign in again", content_type = "text/html", body = String)))]
pub async fn password(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let changed = crate::service::accounts::change_password(
        &state,
        &client,
        &auth,
        form.current_password,
        form.new_password,
    )
    .await;
    if let Err(e) = changed {
        return with_status(
            page(
                "Password not changed",
                html! {
                    (error_box(Some(&e.message)))
                    p { a href="/auth/ui/account" { "Back to your account" } }
                },
            ),
            status_of(&e),
        );
    }
    // Every session ended, this one too: sign in with the new password.
    let changed = page(
        "Password changed",
        html! { p { "Every session was signed out. " a href="/auth/ui/login" { "Sign in" } " with the new password." } },
    );
    with_cookies_of(changed, &signed_out())
}

#[utoipa::path(post, path = "/auth/ui/passkeys/{id}/delete", operation_id = "pages_passkey_delete",
    tag = "pages", summary = "Remove a passkey",
    params(("id" = String, Path, description = "The passkey's id")),
    responses((status = 303, description = "Back to the account page")))]
pub async fn passkey_delete(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    back_or_error(
        crate::service::passkeys::delete(&state, &client, &auth, &id).await,
        "Your account",
        "/auth/ui/account",
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NameForm {
    name: String,
}

#[utoipa::path(post, path = "/auth/ui/profile", operation_id = "pages_profile", tag = "pages",
    summary = "Change the name (empty clears it)",
    request_body(content = NameForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Back to the account page")))]
pub async fn profile(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<NameForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let name = Some(form.name).filter(|n| !n.trim().is_empty());
    back_or_error(
        crate::service::profile::update(&state, &client, &auth, Some(name), None, None).await,
        "Your account",
        "/auth/ui/account",
    )
    .await
}

#[utoipa::path(post, path = "/auth/ui/passkeys/{id}/rename", operation_id = "pages_passkey_rename",
    tag = "pages", summary = "Rename a passkey",
    params(("id" = String, Path, description = "The passkey's id")),
    request_body(content = NameForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Back to the account page")))]
pub async fn passkey_rename(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<NameForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    back_or_error(
        crate::service::passkeys::rename(&state, &auth, &id, &form.name).await,
        "Your account",
        "/auth/ui/account",
    )
    .await
}
