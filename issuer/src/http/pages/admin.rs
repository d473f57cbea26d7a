//! Administration: users (search, detail: disable, end sessions, reset
//! second factors, teams), teams and their members, the daily summary as a
//! chart and recent security events. Every action is the admin API's
//! handler, with its checks (an admin cannot disable themselves, …).

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
    let list = crate::http::json::users::ListQuery {
        q: (!q.is_empty()).then(|| q.clone()),
        after: None,
        limit: Some(100),
    };
    let body = match crate::http::json::users::list(
        State(state.clone()),
        admin.clone(),
        Query(list),
    )
    .await
    {
        Ok(j) => j.0,
        Err(e) => return error_page("Administration", e).await,
    };
    let empty = Vec::new();
    let users = body["users"].as_array().unwrap_or(&empty);
    let daily = crate::http::json::audit::daily(
        State(state.clone()),
        admin.clone(),
        Query(crate::http::json::audit::SummaryQuery { days: Some(14) }),
    )
    .await
    .map(|j| j.0)
    .unwrap_or(Value::Null);
    let events = crate::http::json::audit::list(
        State(state.clone()),
        admin,
        Query(crate::http::json::audit::AuditQuery {
            limit: Some(15),
            ..Default::default()
        }),
    )
    .await
    .map(|j| j.0["events"].clone())
    .unwrap_or(Value::Null);
    page(
        "Administration",
        html! {
            nav { a href="/auth/ui/account" { "Your account" } a href="/auth/ui/admin/teams" { "Teams" } }
            h2 { "Sign-ins, last 14 days" }
            (daily_chart(&daily))
            h2 { "Recent security events" }
            table id="events" {
                thead { tr { th { "Time (UTC)" } th { "Event" } th { "Outcome" } th { "Who" } th { "IP" } } }
                tbody {
                    @for e in events.as_array().unwrap_or(&empty) {
                        tr {
                            td { (e["time"].as_str().unwrap_or_default().get(..19).unwrap_or_default().replace('T', " ")) }
                            td { (e["action"].as_str().unwrap_or_default()) }
                            td { (e["outcome"].as_str().unwrap_or_default()) }
                            td { (e["email"].as_str().or(e["target_id"].as_str()).unwrap_or_default()) }
                            td { (e["ip"].as_str().unwrap_or_default()) }
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
                    @for u in users {
                        @let id = u["user"]["id"].as_str().unwrap_or_default();
                        @let email = u["user"]["email"].as_str().unwrap_or_default();
                        @let disabled = u["disabled"] == true;
                        tr data-user=(email) {
                            td { a href={ "/auth/ui/admin/users/" (id) } { (email) } }
                            td { (u["user"]["roles"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
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
fn daily_chart(daily: &Value) -> Markup {
    let empty = Vec::new();
    let mut days: Vec<&Value> = daily["days"].as_array().unwrap_or(&empty).iter().collect();
    days.reverse(); // oldest first, left to right
    let n = |d: &Value, k: &str| d[k].as_i64().unwrap_or(0);
    let top = days
        .iter()
        .map(|d| n(d, "sign_ins").max(n(d, "sign_in_failures")))
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
                rect x=(x) y=(height - h(n(d, "sign_ins"))) width=(bar) height=(h(n(d, "sign_ins"))) fill="#2563eb" {
                    title { (d["date"].as_str().unwrap_or_default()) ": " (n(d, "sign_ins")) " sign-ins" }
                }
                rect x=(x + bar) y=(height - h(n(d, "sign_in_failures"))) width=(bar) height=(h(n(d, "sign_in_failures"))) fill="#b91c1c" {
                    title { (d["date"].as_str().unwrap_or_default()) ": " (n(d, "sign_in_failures")) " failed" }
                }
            }
        }
        table {
            caption id="daily-caption" { "Sign-ins (blue) and failed sign-ins (red) per day" }
            thead { tr { th { "Day" } th { "Sign-ins" } th { "Failed" } th { "Rate-limited" } th { "Active users" } } }
            tbody {
                @for d in days.iter().rev() {
                    tr {
                        td { (d["date"].as_str().unwrap_or_default()) }
                        td { (n(d, "sign_ins")) }
                        td { (n(d, "sign_in_failures")) }
                        td { (n(d, "rate_limited")) }
                        td { (n(d, "active_users")) }
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
    let users = crate::http::json::users::ChangeUserRequest {
        roles: None,
        disabled: Some(action == "disable"),
        admin_metadata: None,
    };
    let s = State(state.clone());
    let result = match action.as_str() {
        "end-sessions" => crate::http::json::users::logout_all(s, client, auth, Path(id))
            .await
            .map(|_| ()),
        "reset-mfa" => match crate::service::admin::require_admin(auth) {
            Ok(admin) => crate::service::mfa::admin_reset(&state, &client, &admin, &id)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        },
        _ => crate::http::json::users::change(s, client, auth, Path(id), ApiJson(users))
            .await
            .map(|_| ()),
    };
    back_or_error(result, "Administration", &back).await
}

/// A path segment from an id or slug we did not mint here.
fn encode_segment(s: &str) -> String {
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
    let user =
        match crate::http::json::users::get(State(state.clone()), admin.clone(), Path(id.clone()))
            .await
        {
            Ok(j) => j.0,
            Err(e) => return error_page("Administration", e).await,
        };
    let teams = crate::http::json::teams::list(State(state.clone()), admin)
        .await
        .map(|j| j.0["teams"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    let email = user["user"]["email"].as_str().unwrap_or_default();
    let disabled = user["disabled"] == true;
    let mfa = &user["mfa"];
    let has_factor = mfa["totp"] == true || mfa["passkeys"].as_i64().unwrap_or(0) > 0;
    let seg = encode_segment(&id);
    let action = |a: &str| format!("/auth/ui/admin/users/{seg}/{a}?from=user");
    let empty = Vec::new();
    let roles = user["user"]["roles"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    page(
        email,
        html! {
            nav { a href="/auth/ui/admin" { "Users" } a href="/auth/ui/admin/teams" { "Teams" } }
            dl id="user-detail" {
                dt { "Name" } dd { (user["user"]["name"].as_str().unwrap_or("—")) }
                dt { "Email" } dd { (email) @if user["profile"]["email_verified"] == true { " (verified)" } }
                dt { "Roles" } dd { @if roles.is_empty() { "none" } @else { (roles) } }
                dt { "State" } dd id="user-state" { @if disabled { "disabled" } @else { "active" } }
                dt { "Created" } dd { (crate::store::rfc3339_ms(user["user"]["created_at"].as_i64().unwrap_or(0) * 1000).get(..10).unwrap_or_default()) }
                dt { "Live sessions" } dd id="user-sessions" { (user["live_sessions"].as_u64().unwrap_or(0)) }
                dt { "Second factors" } dd id="user-mfa" {
                    @if has_factor {
                        @if mfa["totp"] == true { "authenticator app" }
                        @if mfa["totp"] == true && mfa["passkeys"].as_i64().unwrap_or(0) > 0 { ", " }
                        @if mfa["passkeys"].as_i64().unwrap_or(0) > 0 { (mfa["passkeys"]) " passkey(s)" }
                    } @else { "none" }
                }
                dt { "Linked accounts" } dd {
                    @for i in user["identities"].as_array().unwrap_or(&empty) {
                        (i["provider"].as_str().unwrap_or_default()) ": " (i["login"].as_str().unwrap_or_default()) " "
                    }
                    @if user["identities"].as_array().is_none_or(Vec::is_empty) { "none" }
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
                @for t in user["teams"].as_array().unwrap_or(&empty) {
                    @let slug = t["team"].as_str().unwrap_or_default();
                    li {
                        a href={ "/auth/ui/admin/teams/" (encode_segment(slug)) } { (slug) } " (" (t["role"].as_str().unwrap_or_default()) ") "
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
                        @for t in &teams { option value=(t["slug"].as_str().unwrap_or_default()) { (t["name"].as_str().unwrap_or_default()) } }
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
    if let Err(e) = crate::http::json::admin::require_admin(&auth) {
        return error_page("Administration", e).await;
    }
    let back = format!("/auth/ui/admin/users/{}", encode_segment(&id));
    let request = crate::http::json::teams::MemberRequest { role: form.role };
    let result = crate::http::json::teams::put_member(
        State(state.clone()),
        client,
        auth,
        Path((form.team, id)),
        ApiJson(request),
    )
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
    let teams = match crate::http::json::teams::list(State(state.clone()), admin).await {
        Ok(j) => j.0["teams"].as_array().cloned().unwrap_or_default(),
        Err(e) => return error_page("Teams", e).await,
    };
    page(
        "Teams",
        html! {
            nav { a href="/auth/ui/admin" { "Users" } a href="/auth/ui/account" { "Your account" } }
            ul id="teams" {
                @for t in &teams {
                    @let slug = t["slug"].as_str().unwrap_or_default();
                    li { a href={ "/auth/ui/admin/teams/" (encode_segment(slug)) } { (t["name"].as_str().unwrap_or_default()) } " (" (slug) ")" }
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
    let request = crate::http::json::teams::CreateTeamRequest {
        slug: form.slug,
        name: form.name,
        owner: None,
    };
    let result =
        crate::http::json::teams::create(State(state.clone()), client, auth, ApiJson(request))
            .await;
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
    if let Err(e) = crate::http::json::admin::require_admin(&auth) {
        return error_page("Teams", e).await;
    }
    let members =
        match crate::http::json::teams::members(State(state.clone()), auth, Path(slug.clone()))
            .await
        {
            Ok(j) => j.0["members"].as_array().cloned().unwrap_or_default(),
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
                        @let user = m["user_id"].as_str().unwrap_or_default();
                        @let email = m["email"].as_str().unwrap_or_default();
                        tr data-member=(email) {
                            td { a href={ "/auth/ui/admin/users/" (encode_segment(user)) } { (email) } }
                            td { (m["role"].as_str().unwrap_or_default()) }
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
    let result =
        crate::http::json::teams::delete(State(state.clone()), client, auth, Path(slug)).await;
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
    if let Err(e) = crate::http::json::admin::require_admin(&auth) {
        return error_page("Teams", e).await;
    }
    let back = if from.from.as_deref() == Some("user") {
        format!("/auth/ui/admin/users/{}", encode_segment(&user_id))
    } else {
        format!("/auth/ui/admin/teams/{}", encode_segment(&slug))
    };
    let result = crate::http::json::teams::delete_member(
        State(state.clone()),
        client,
        auth,
        Path((slug, user_id)),
    )
    .await;
    back_or_error(result, "Teams", &back).await
}
