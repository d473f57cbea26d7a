//! Administration: users (search, disable), the daily summary as a chart and
//! recent security events.

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
    let me = auth.user.id.clone();
    let q = query.q.unwrap_or_default();
    let list = crate::api::users::ListQuery {
        q: (!q.is_empty()).then(|| q.clone()),
        after: None,
        limit: Some(100),
    };
    let body = match crate::api::users::list(State(state.clone()), auth.clone(), Query(list)).await
    {
        Ok(j) => j.0,
        Err(e) => return error_page("Administration", e).await,
    };
    let empty = Vec::new();
    let users = body["users"].as_array().unwrap_or(&empty);
    let daily = crate::api::audit::daily(
        State(state.clone()),
        auth.clone(),
        Query(crate::api::audit::SummaryQuery { days: Some(14) }),
    )
    .await
    .map(|j| j.0)
    .unwrap_or(Value::Null);
    let events = crate::api::audit::list(
        State(state.clone()),
        auth,
        Query(crate::api::audit::AuditQuery {
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
            nav { a href="/auth/ui/account" { "Your account" } }
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
                            td { (email) }
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

#[utoipa::path(post, path = "/auth/ui/admin/users/{id}/{action}", operation_id = "pages_admin_user",
    tag = "pages", summary = "Disable or enable a user",
    params(("id" = String, Path, description = "The user's id"),
           ("action" = String, Path, description = "`disable` or `enable`")),
    responses((status = 303, description = "Back to the administration page")))]
pub async fn admin_user(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return ApiError::not_found("no such action").into_response(),
    };
    let Ok(auth) = page_auth(&state, &headers).await else {
        return to_login();
    };
    let request = crate::api::users::ChangeUserRequest {
        roles: None,
        disabled: Some(disabled),
        admin_metadata: None,
    };
    let result = crate::api::users::change(
        State(state.clone()),
        client,
        auth,
        Path(id),
        ApiJson(request),
    )
    .await;
    back_or_error(result, "Administration", "/auth/ui/admin").await
}
