//! Administration: users (search, detail: disable, end sessions, reset
//! second factors, teams), teams and their members, the daily summary as a
//! chart and recent security events. Every action is a rule of the
//! services (`service::{users,teams,audit,mfa}`), with its checks (an admin
//! cannot disable themselves, …), as the admin API's.

use super::*;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    q: Option<String>,
}

#[utoipa::path(get, path = "/auth/ui/admin", operation_id = "pages_admin", tag = "pages",
    summary = "Administration: users", params(SearchQuery),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn admin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let admin = match crate::service::admin::require_admin(auth.clone()) {
        Ok(admin) => admin,
        Err(e) => return error_page("Administration", e).await,
    };
    let me = auth.user.id.clone();
    let q = query.q.unwrap_or_default();
    let search = (!q.is_empty()).then_some(q.as_str());
    let users = match crate::service::users::search(&state, &admin, search, None, Some(100)).await {
        Ok(page) => page.users,
        Err(e) => return error_page("Administration", e).await,
    };
    // The summary and the events are extras: the page stands without them.
    let daily = crate::service::audit::daily(&state, &admin, Some(14))
        .await
        .map(|d| d.days)
        .unwrap_or_default();
    let recent = crate::service::audit::AuditQuery {
        limit: Some(15),
        ..Default::default()
    };
    let events = crate::service::audit::search(&state, &admin, recent)
        .await
        .map(|p| p.events)
        .unwrap_or_default();
    page(
        "Administration",
        html! {
            nav { a href="/auth/ui/account" { "Your account" } a href="/auth/ui/admin/teams" { "Teams" } a href="/auth/ui/admin/clients" { "Applications" } }
            h2 { "Sign-ins, last 14 days" }
            (daily_chart(&daily))
            h2 { "Recent security events" }
            table id="events" {
                thead { tr { th { "Time (UTC)" } th { "Event" } th { "Outcome" } th { "Who" } th { "IP" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td { (e.time.get(..19).unwrap_or_default().replace('T', " ")) }
                            td { (e.action) }
                            td { (e.outcome) }
                            td { (e.email.as_deref().or(e.target_id.as_deref()).unwrap_or_default()) }
                            td { (e.ip.as_deref().unwrap_or_default()) }
                        }
                    }
                }
            }
            h2 { "Users" }
            form method="get" action="/auth/ui/admin" role="search" {
                label for="q" { "Find users" }
                input id="q" name="q" type="search" value=(q);
                button type="submit" { "Search" }
            }
            table {
                thead { tr { th { "Email" } th { "Roles" } th { "State" } th { "Action" } } }
                tbody {
                    @for u in &users {
                        @let id = u.id.as_str();
                        @let email = u.email.as_str();
                        @let disabled = u.disabled_at.is_some();
                        tr data-user=(email) {
                            td { a href={ "/auth/ui/admin/users/" (id) } { (email) } }
                            td { (u.roles.join(", ")) }
                            td { @if disabled { "disabled" } @else { "active" } }
                            td {
                                @if id != me {
                                    form method="post" action={ "/auth/ui/admin/users/" (id) (if disabled { "/enable" } else { "/disable" }) } {
                                        button type="submit" aria-label={ (if disabled { "Enable " } else { "Disable " }) (email) } {
                                            @if disabled { "Enable" } @else { "Disable" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Sign-ins and failures per day as bars (server-drawn SVG, no script),
/// with the same numbers in a table for screen readers and text browsers.
fn daily_chart(days: &[crate::service::audit::Day]) -> Markup {
    let mut days: Vec<_> = days.iter().collect();
    days.reverse(); // oldest first, left to right
    let top = days
        .iter()
        .map(|d| d.sign_ins.max(d.sign_in_failures))
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, bar) = (14 * 24, 80i64, 10);
    let h = |v: i64| v * height / top;
    html! {
        svg id="daily-chart" viewBox={ "0 0 " (width) " " (height + 14) } width="100%" role="img"
            aria-labelledby="daily-caption" {
            @for (i, d) in days.iter().enumerate() {
                @let x = i as i64 * 24;
                rect x=(x) y=(height - h(d.sign_ins)) width=(bar) height=(h(d.sign_ins)) fill="#2563eb" {
                    title { (d.date) ": " (d.sign_ins) " sign-ins" }
                }
                rect x=(x + bar) y=(height - h(d.sign_in_failures)) width=(bar) height=(h(d.sign_in_failures)) fill="#b91c1c" {
                    title { (d.date) ": " (d.sign_in_failures) " failed" }
                }
            }
        }
        table {
            caption id="daily-caption" { "Sign-ins (blue) and failed sign-ins (red) per day" }
            thead { tr { th { "Day" } th { "Sign-ins" } th { "Failed" } th { "Rate-limited" } th { "Active users" } } }
            tbody {
                @for d in days.iter().rev() {
                    tr {
                        td { (d.date) }
                        td { (d.sign_ins) }
                        td { (d.sign_in_failures) }
                        td { (d.rate_limited) }
                        td { (d.active_users) }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FromQuery {
    /// `user`: back to the user's page (else the user list).
    from: Option<String>,
}

#[utoipa::path(post, path = "/auth/ui/admin/users/{id}/{action}", operation_id = "pages_admin_user",
    tag = "pages", summary = "Disable or enable a user, end their sessions, reset their second factors",
    params(("id" = String, Path, description = "The user's id"),
           ("action" = String, Path, description = "`disable`, `enable`, `end-sessions` or `reset-mfa`"),
           FromQuery),
    responses((status = 303, description = "Back to the administration page")))]
pub async fn admin_user(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Query(from): Query<FromQuery>,
) -> Response {
    if !["disable", "enable", "end-sessions", "reset-mfa"].contains(&action.as_str()) {
        return ApiError::not_found("no such action").into_response();
    }
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let back = if from.from.as_deref() == Some("user") {
        format!("/auth/ui/admin/users/{}", encode_segment(&id))
    } else {
        "/auth/ui/admin".to_string()
    };
    let admin = match crate::service::admin::require_admin(auth) {
        Ok(admin) => admin,
        Err(e) => return error_page("Administration", e).await,
    };
    let result = match action.as_str() {
        "end-sessions" => crate::service::users::end_sessions(&state, &client, &admin, &id)
            .await
            .map(|_| ()),
        "reset-mfa" => crate::service::mfa::admin_reset(&state, &client, &admin, &id)
            .await
            .map(|_| ()),
        _ => {
            let change = crate::service::users::Change {
                disabled: Some(action == "disable"),
                ..Default::default()
            };
            crate::service::users::change(&state, &client, &admin, &id, change)
                .await
                .map(|_| ())
        }
    };
    back_or_error(result, "Administration", &back).await
}

/// A path segment from an id or slug we did not mint here.
pub(super) fn encode_segment(s: &str) -> String {
    encode_component(s)
}

#[utoipa::path(get, path = "/auth/ui/admin/users/{id}", operation_id = "pages_admin_user_page",
    tag = "pages", summary = "Administration: one user",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn admin_user_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let admin = match crate::service::admin::require_admin(auth.clone()) {
        Ok(admin) => admin,
        Err(e) => return error_page("Administration", e).await,
    };
    let me = auth.user.id == id;
    let detail = match crate::service::users::detail(&state, &admin, &id).await {
        Ok(d) => d,
        Err(e) => return error_page("Administration", e).await,
    };
    let teams = crate::service::teams::list(&state, &admin)
        .await
        .unwrap_or_default();
    let user = &detail.user;
    let email = user.email.as_str();
    let disabled = user.disabled_at.is_some();
    let mfa = &detail.mfa;
    let has_factor = mfa.totp || mfa.passkeys > 0;
    let seg = encode_segment(&id);
    let action = |a: &str| format!("/auth/ui/admin/users/{seg}/{a}?from=user");
    let roles = user.roles.join(", ");
    page(
        email,
        html! {
            nav { a href="/auth/ui/admin" { "Users" } a href="/auth/ui/admin/teams" { "Teams" } }
            dl id="user-detail" {
                dt { "Name" } dd { (user.name.as_deref().unwrap_or("—")) }
                dt { "Email" } dd { (email) @if user.email_verified_at.is_some() { " (verified)" } }
                dt { "Roles" } dd { @if roles.is_empty() { "none" } @else { (roles) } }
                dt { "State" } dd id="user-state" { @if disabled { "disabled" } @else { "active" } }
                dt { "Created" } dd { (super::utc_date(user.created_at)) }
                dt { "Live sessions" } dd id="user-sessions" { (detail.live_sessions) }
                dt { "Second factors" } dd id="user-mfa" {
                    @if has_factor {
                        @if mfa.totp { "authenticator app" }
                        @if mfa.totp && mfa.passkeys > 0 { ", " }
                        @if mfa.passkeys > 0 { (mfa.passkeys) " passkey(s)" }
                    } @else { "none" }
                }
                dt { "Linked accounts" } dd {
                    @for i in &detail.identities {
                        (i.provider) ": " (i.login) " "
                    }
                    @if detail.identities.is_empty() { "none" }
                }
            }
            @if !me {
                h2 { "Actions" }
                form.inline method="post" action=(action(if disabled { "enable" } else { "disable" })) {
                    button type="submit" { @if disabled { "Enable" } @else { "Disable" } }
                }
                form.inline method="post" action=(action("end-sessions")) {
                    button type="submit" { "End all sessions" }
                }
                @if has_factor {
                    form.inline method="post" action=(action("reset-mfa")) {
                        button type="submit" { "Reset second factors" }
                    }
                }
            }
            h2 { "Teams" }
            ul id="user-teams" {
                @for (slug, role) in &detail.teams {
                    li {
                        a href={ "/auth/ui/admin/teams/" (encode_segment(slug)) } { (slug) } " (" (role) ") "
                        form.inline method="post" action={ "/auth/ui/admin/teams/" (encode_segment(slug)) "/members/" (seg) "/remove?from=user" } {
                            button type="submit" aria-label={ "Remove from " (slug) } { "Remove" }
                        }
                    }
                }
            }
            @if !teams.is_empty() {
                form method="post" action={ "/auth/ui/admin/users/" (seg) "/teams" } {
                    label for="team" { "Team" }
                    select id="team" name="team" {
                        @for t in &teams { option value=(t.slug) { (t.name) } }
                    }
                    label for="role" { "Role in the team" }
                    select id="role" name="role" {
                        option value="member" { "member" } option value="maintainer" { "maintainer" } option value="owner" { "owner" }
                    }
                    button type="submit" { "Add to team" }
                }
            }
        },
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TeamMemberForm {
    team: String,
    role: String,
}

#[utoipa::path(post, path = "/auth/ui/admin/users/{id}/teams", operation_id = "pages_admin_user_team",
    tag = "pages", summary = "Add a user to a team",
    params(("id" = String, Path, description = "The user's id")),
    request_body(content = TeamMemberForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Back to the user's page")))]
pub async fn admin_user_team(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TeamMemberForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    // An admin's page: a team owner has the members API, not this.
    if let Err(e) = crate::service::admin::require_admin(auth.clone()) {
        return error_page("Administration", e).await;
    }
    let back = format!("/auth/ui/admin/users/{}", encode_segment(&id));
    let result =
        crate::service::teams::put_member(&state, &client, &auth, &form.team, &id, &form.role)
            .await;
    back_or_error(result, "Administration", &back).await
}

#[utoipa::path(get, path = "/auth/ui/admin/teams", operation_id = "pages_admin_teams",
    tag = "pages", summary = "Administration: teams",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn admin_teams(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let admin = match crate::service::admin::require_admin(auth.clone()) {
        Ok(admin) => admin,
        Err(e) => return error_page("Teams", e).await,
    };
    let teams = match crate::service::teams::list(&state, &admin).await {
        Ok(teams) => teams,
        Err(e) => return error_page("Teams", e).await,
    };
    page(
        "Teams",
        html! {
            nav { a href="/auth/ui/admin" { "Users" } a href="/auth/ui/admin/clients" { "Applications" } a href="/auth/ui/account" { "Your account" } }
            ul id="teams" {
                @for t in &teams {
                    li { a href={ "/auth/ui/admin/teams/" (encode_segment(&t.slug)) } { (t.name) } " (" (t.slug) ")" }
                }
            }
            h2 { "New team" }
            form method="post" action="/auth/ui/admin/teams" {
                label for="slug" { "Short name (a-z, 0-9, -)" }
                input id="slug" name="slug" required maxlength="63" pattern="[a-z0-9]([a-z0-9\\-]*[a-z0-9])?" autocapitalize="off";
                label for="team_name" { "Name" }
                input id="team_name" name="name" required maxlength="200";
                button type="submit" { "Create team" }
            }
        },
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TeamForm {
    slug: String,
    name: String,
}

#[utoipa::path(post, path = "/auth/ui/admin/teams", operation_id = "pages_admin_team_create",
    tag = "pages", summary = "Create a team",
    request_body(content = TeamForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "To the team's page")))]
pub async fn admin_team_create(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<TeamForm>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let back = format!("/auth/ui/admin/teams/{}", encode_segment(&form.slug));
    let result =
        crate::service::teams::create(&state, &client, &auth, &form.slug, &form.name, None).await;
    back_or_error(result, "Teams", &back).await
}

#[utoipa::path(get, path = "/auth/ui/admin/teams/{slug}", operation_id = "pages_admin_team",
    tag = "pages", summary = "Administration: a team and its members",
    params(("slug" = String, Path, description = "The team's slug")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to the sign-in page"),
    ))]
pub async fn admin_team(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    // The admin API's check first: the members endpoint also lets a team's
    // own members read it, this page is for admins.
    if let Err(e) = crate::service::admin::require_admin(auth.clone()) {
        return error_page("Teams", e).await;
    }
    let members = match crate::service::teams::members(&state, &auth, &slug).await {
        Ok(members) => members,
        Err(e) => return error_page("Teams", e).await,
    };
    let seg = encode_segment(&slug);
    page(
        &format!("Team {slug}"),
        html! {
            nav { a href="/auth/ui/admin/teams" { "Teams" } a href="/auth/ui/admin" { "Users" } }
            table id="members" {
                thead { tr { th { "Member" } th { "Role" } th { span.visually-hidden { "Action" } } } }
                tbody {
                    @for m in &members {
                        @let user = m.user_id.as_str();
                        @let email = m.email.as_str();
                        tr data-member=(email) {
                            td { a href={ "/auth/ui/admin/users/" (encode_segment(user)) } { (email) } }
                            td { (m.role) }
                            td {
                                form method="post" action={ "/auth/ui/admin/teams/" (seg) "/members/" (encode_segment(user)) "/remove" } {
                                    button type="submit" aria-label={ "Remove " (email) } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
            p { "Add members from a user's page." }
            form method="post" action={ "/auth/ui/admin/teams/" (seg) "/delete" } {
                button type="submit" { "Delete this team" }
            }
        },
    )
}

#[utoipa::path(post, path = "/auth/ui/admin/teams/{slug}/delete", operation_id = "pages_admin_team_delete",
    tag = "pages", summary = "Delete a team",
    params(("slug" = String, Path, description = "The team's slug")),
    responses((status = 303, description = "To the teams")))]
pub async fn admin_team_delete(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let result = crate::service::teams::delete(&state, &client, &auth, &slug).await;
    back_or_error(result, "Teams", "/auth/ui/admin/teams").await
}

#[utoipa::path(post, path = "/auth/ui/admin/teams/{slug}/members/{user_id}/remove",
    operation_id = "pages_admin_team_remove", tag = "pages", summary = "Remove a member",
    params(("slug" = String, Path, description = "The team's slug"),
           ("user_id" = String, Path, description = "The member's id"), FromQuery),
    responses((status = 303, description = "Back to the team, or to the user")))]
pub async fn admin_team_remove(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path((slug, user_id)): Path<(String, String)>,
    Query(from): Query<FromQuery>,
) -> Response {
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    // Removing yourself is a member's right in the API; here it is an
    // admin's page, so the admin check comes first.
    if let Err(e) = crate::service::admin::require_admin(auth.clone()) {
        return error_page("Teams", e).await;
    }
    let back = if from.from.as_deref() == Some("user") {
        format!("/auth/ui/admin/users/{}", encode_segment(&user_id))
    } else {
        format!("/auth/ui/admin/teams/{}", encode_segment(&slug))
    };
    let result =
        crate::service::teams::remove_member(&state, &client, &auth, &slug, &user_id).await;
    back_or_error(result, "Teams", &back).await
}
