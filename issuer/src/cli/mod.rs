//! One-shot administrative commands that work on the database directly,
//! also while servers run.

use std::sync::Arc;

mod clients;
pub use clients::clients;

use crate::config::{CreateUserArgs, DbArgs};
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::password::{weakness, PasswordHasher};
use crate::domain::tokens::{new_id, random_b64};
use crate::store::{CreateUserError, Store, User};

/// `issuer openapi`: the document, pretty-printed, for docs and clients.
pub fn openapi() -> anyhow::Result<()> {
    use std::io::Write;
    let text = crate::http::openapi_document().to_pretty_json()?;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub async fn migrate(db: &DbArgs) -> anyhow::Result<()> {
    let store = Store::connect(&db.database_url, 1).await?;
    store.migrate().await?;
    println!("migrations applied");
    Ok(())
}

pub async fn create_user(args: &CreateUserArgs) -> anyhow::Result<()> {
    let store = Store::connect(&args.db.database_url, 1).await?;
    store.migrate().await?;
    let email = crate::service::accounts::normalize_email(&args.email)
        .map_err(|e| anyhow::anyhow!("--email: {}", e.message))?;
    let (password, generated) = match &args.password {
        Some(p) => (p.clone(), false),
        None => (random_b64(18)?, true),
    };
    if let Some(reason) = weakness(&password, &email) {
        anyhow::bail!("password refused: {reason}");
    }
    let hasher = PasswordHasher::new(19_456, 2, 1, 1, 4)?;
    let now = Arc::new(SystemClock).now_ms().div_euclid(1000);
    let user = User {
        id: new_id(),
        email: email.clone(),
        name: args.name.clone(),
        password_hash: hasher.hash(password.clone()).await?,
        roles: if args.admin {
            vec!["admin".into()]
        } else {
            Vec::new()
        },
        created_at: now,
        password_changed_at: now,
        disabled_at: None,
        token_generation: 0,
        email_verified_at: None,
        avatar_url: None,
        metadata: "{}".into(),
        admin_metadata: "{}".into(),
    };
    match store.create_user(&user).await {
        Ok(()) => {}
        Err(CreateUserError::EmailTaken) => anyhow::bail!("{email} already exists"),
        Err(e) => return Err(e.into()),
    }
    println!(
        "created user {} ({email}){}",
        user.id,
        if args.admin { " with role admin" } else { "" }
    );
    if generated {
        println!("generated password: {password}");
    }
    Ok(())
}

async fn key_context(
    args: &crate::config::KeysArgs,
) -> anyhow::Result<(Store, crate::domain::keys::Kek)> {
    let store = Store::connect(&args.db.database_url, 2).await?;
    store.migrate().await?;
    let kek = crate::open_kek(&store, &args.db, &args.keys).await?;
    Ok((store, kek))
}

/// Tells running replicas (through Redis) that keys changed; without Redis
/// they notice within a feed heartbeat (about a second).
async fn announce_key_change(redis_url: Option<&str>, version: i64) {
    let Some(url) = redis_url else {
        println!("running issuers pick this up within about a second");
        return;
    };
    match crate::service::feed::FeedHub::new(Some(url), 1) {
        Ok(hub) => hub.keys_changed(version, true).await,
        Err(e) => eprintln!("issuer: cannot reach redis to announce the change: {e}"),
    }
}

fn print_keys(keys: &[crate::store::StoredKey]) {
    println!(
        "{:<18} {:<6} {:<8} {:>12} {:>12} {:>12} {:>12} USE",
        "KID", "ALG", "STATE", "CREATED", "ACTIVATES", "RETIRES", "REMOVES"
    );
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |t| t.to_string());
    for k in keys {
        println!(
            "{:<18} {:<6} {:<8} {:>12} {:>12} {:>12} {:>12} {}",
            k.kid,
            k.alg,
            k.state,
            k.created_at,
            k.activates_at,
            opt(k.retires_at),
            opt(k.removes_at),
            k.key_use.as_str()
        );
    }
}

pub async fn keys(command: &crate::config::KeysCommand) -> anyhow::Result<()> {
    use crate::config::KeysCommand;
    use crate::domain::rotation;
    let now = SystemClock.now_ms().div_euclid(1000);
    match command {
        KeysCommand::List(args) => {
            let store = Store::connect(&args.db.database_url, 1).await?;
            store.migrate().await?;
            print_keys(&store.keys().await?);
        }
        KeysCommand::Rotate(args) => {
            let (store, kek) = key_context(&args.common).await?;
            let mut life = args.common.keys.lifecycle();
            if let Some(alg) = args.alg {
                life.alg = alg;
            }
            let maker = crate::domain::keys::KeyMaker { kek: &kek, now };
            let changes = store
                .change_keys(|keys| {
                    let mut make = |u, a, st: &str, at| maker.make(u, a, st, at);
                    rotation::plan_rotate_access(keys, now, &life, args.now, life.alg, &mut make)
                })
                .await?;
            if let Some(kid) = crate::service::keyring::created_kid(&changes) {
                println!("new key {kid} ({})", life.alg);
            }
            announce_key_change(
                args.common.redis_url.as_deref(),
                store.key_set_version().await?,
            )
            .await;
            print_keys(&store.keys().await?);
        }
        KeysCommand::Revoke(args) => {
            let (store, kek) = key_context(&args.common).await?;
            let maker = crate::domain::keys::KeyMaker { kek: &kek, now };
            let alg = args.common.keys.signing_alg;
            store
                .change_keys(|keys| {
                    let mut make = |u, a, st: &str, at| maker.make(u, a, st, at);
                    rotation::plan_revoke_any(keys, &args.kid, now, alg, &mut make)
                })
                .await?;
            println!("revoked {}", args.kid);
            announce_key_change(
                args.common.redis_url.as_deref(),
                store.key_set_version().await?,
            )
            .await;
            print_keys(&store.keys().await?);
        }
    }
    Ok(())
}

// ---- users, roles and teams: the admin API's operations, from a shell ----

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// Revocations written here reach sidecars through the running issuers,
/// which read new records within a feed poll (about a second).
fn revocation_expiry(now_ms: i64) -> i64 {
    // The longest access-token lifetime a server may be configured with,
    // plus verifier leeway: a CLI does not know the server's setting.
    now_ms.div_euclid(1000) + 86_400 + crate::REVOCATION_LEEWAY_SECS
}

async fn admin_store(db: &DbArgs) -> anyhow::Result<Store> {
    let store = Store::connect(&db.database_url, 2).await?;
    store.migrate().await?;
    Ok(store)
}

async fn find_user(store: &Store, who: &str) -> anyhow::Result<User> {
    let found = if who.contains('@') {
        store.user_by_email(&who.trim().to_lowercase()).await?
    } else {
        store.user_by_id(who).await?
    };
    found.ok_or_else(|| anyhow::anyhow!("no such user: {who}"))
}

fn describe(u: &User) -> String {
    format!(
        "{}  {}  roles=[{}]{}{}",
        u.id,
        u.email,
        u.roles.join(","),
        u.name
            .as_deref()
            .map(|n| format!("  name={n:?}"))
            .unwrap_or_default(),
        if u.disabled_at.is_some() {
            "  DISABLED"
        } else {
            ""
        }
    )
}

/// Admin actions from the shell are audited like the API's, with the CLI
/// as the actor. A failed audit write is reported, not fatal: the change
/// itself is done.
async fn audit(store: &Store, event: &str, detail: serde_json::Value) {
    let mut entry = crate::store::AuditEvent::new(now_ms(), event).actor("cli");
    if let Some(target) = ["user", "team", "role"]
        .iter()
        .find_map(|k| detail.get(k).and_then(|v| v.as_str()))
    {
        entry = entry.target(target);
    }
    if let Err(e) = store.record_audit(&entry.meta(detail)).await {
        eprintln!("warning: audit write failed: {e}");
    }
}

fn api_error(e: crate::service::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message)
}

pub async fn users(command: &crate::config::UsersCommand) -> anyhow::Result<()> {
    use crate::config::UsersCommand as C;
    use crate::store::UserChange;
    match command {
        C::Create(args) => create_user(args).await,
        C::List(args) => {
            let store = admin_store(&args.db).await?;
            let users = store
                .search_users(args.query.as_deref(), None, args.limit)
                .await?;
            for u in &users {
                println!("{}", describe(u));
            }
            println!("{} user(s)", users.len());
            Ok(())
        }
        C::Show(who) => {
            let store = admin_store(&who.db).await?;
            let u = find_user(&store, &who.user).await?;
            println!("{}", describe(&u));
            for (slug, role) in store.teams_of(&u.id).await? {
                println!("  team {slug}: {role}");
            }
            for i in store.identities_of(&u.id).await? {
                println!("  {} {} ({})", i.provider, i.login, i.subject);
            }
            Ok(())
        }
        C::Disable(who) | C::Enable(who) => {
            let store = admin_store(&who.db).await?;
            let u = find_user(&store, &who.user).await?;
            let disabled = matches!(command, C::Disable(_));
            let change = UserChange {
                disabled: Some(disabled),
                ..Default::default()
            };
            let now = now_ms();
            changed(
                store
                    .change_user(&u.id, &change, now, revocation_expiry(now))
                    .await?,
            )?;
            println!(
                "{} {}",
                u.email,
                if disabled {
                    "disabled; sessions ended"
                } else {
                    "enabled"
                }
            );
            audit(
                &store,
                "user_changed",
                serde_json::json!({"user": u.id, "disabled": disabled}),
            )
            .await;
            Ok(())
        }
        C::Delete(who) => {
            let store = admin_store(&who.db).await?;
            let u = find_user(&store, &who.user).await?;
            let now = now_ms();
            match store
                .delete_user(&u.id, now, revocation_expiry(now))
                .await?
            {
                crate::store::DeleteUser::Done(_) => {
                    println!("deleted {} ({})", u.email, u.id);
                    audit(&store, "user_deleted", serde_json::json!({"user": u.id})).await
                }
                crate::store::DeleteUser::NoSuchUser => anyhow::bail!("no such user"),
                crate::store::DeleteUser::LastAdmin => {
                    anyhow::bail!("refused: no enabled admin would be left")
                }
                crate::store::DeleteUser::SoleOwner(teams) => anyhow::bail!(
                    "{} is the only owner of {}; make another owner first",
                    u.email,
                    teams.join(", ")
                ),
            }
            Ok(())
        }
        C::LogoutAll(who) => {
            let store = admin_store(&who.db).await?;
            let u = find_user(&store, &who.user).await?;
            let now = now_ms();
            let ended = store
                .revoke_all_sessions(&u.id, "ended_by_admin", now, revocation_expiry(now))
                .await?;
            println!("{}: {} session(s) ended", u.email, ended.len());
            audit(
                &store,
                "user_sessions_ended",
                serde_json::json!({"user": u.id, "sessions_ended": ended.len()}),
            )
            .await;
            Ok(())
        }
        C::SetRoles(args) => {
            let store = admin_store(&args.user.db).await?;
            let u = find_user(&store, &args.user.user).await?;
            let mut roles: Vec<String> = args
                .roles
                .iter()
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect();
            crate::service::roles::check_roles(&roles).map_err(api_error)?;
            roles.sort();
            roles.dedup();
            let change = UserChange {
                roles: Some(roles.clone()),
                disabled: None,
                second_factor_roles: args.mfa_required_roles.clone(),
            };
            let now = now_ms();
            changed(
                store
                    .change_user(&u.id, &change, now, revocation_expiry(now))
                    .await?,
            )?;
            println!("{}: roles=[{}]", u.email, roles.join(","));
            audit(
                &store,
                "user_changed",
                serde_json::json!({"user": u.id, "roles": roles}),
            )
            .await;
            Ok(())
        }
    }
}

/// The user's change went through, or why not.
fn changed(outcome: Option<crate::store::Changed>) -> anyhow::Result<()> {
    match outcome {
        Some(crate::store::Changed::Done(..)) => Ok(()),
        Some(crate::store::Changed::LastAdmin) => {
            anyhow::bail!("refused: no enabled admin would be left")
        }
        None => anyhow::bail!("no such user"),
    }
}

pub async fn roles(command: &crate::config::RolesCommand) -> anyhow::Result<()> {
    use crate::config::RolesCommand as C;
    match command {
        C::List(args) => {
            let store = admin_store(&args.db).await?;
            let map = store.permission_map().await?;
            println!("version {}", map.version);
            for (role, perms) in &map.roles {
                println!("{role}: {}", perms.join(", "));
            }
            Ok(())
        }
        C::Set(args) => {
            if !crate::service::roles::valid_name(&args.role) {
                anyhow::bail!("role {:?}: 1 to 128 of A-Z a-z 0-9 - _ . :", args.role);
            }
            let mut perms: Vec<String> = args
                .permissions
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect();
            if let Some(p) = perms.iter().find(|p| !crate::service::roles::valid_name(p)) {
                anyhow::bail!("permission {p:?}: 1 to 128 of A-Z a-z 0-9 - _ . :");
            }
            perms.sort();
            perms.dedup();
            let store = admin_store(&args.db).await?;
            let version = store
                .set_role(
                    &args.role,
                    args.description.as_deref(),
                    &perms,
                    now_ms().div_euclid(1000),
                )
                .await?;
            println!(
                "{}: {} (map version {version}; sidecars follow within about a second)",
                args.role,
                perms.join(", ")
            );
            audit(
                &store,
                "role_set",
                serde_json::json!({"role": args.role, "permissions": perms, "version": version}),
            )
            .await;
            Ok(())
        }
        C::Delete(args) => {
            let store = admin_store(&args.db).await?;
            match store.delete_role(&args.role).await? {
                Some(version) => {
                    println!("deleted {} (map version {version})", args.role);
                    audit(
                        &store,
                        "role_deleted",
                        serde_json::json!({"role": args.role, "version": version}),
                    )
                    .await;
                }
                None => anyhow::bail!("no such role: {}", args.role),
            }
            Ok(())
        }
    }
}

pub async fn teams(command: &crate::config::TeamsCommand) -> anyhow::Result<()> {
    use crate::config::TeamsCommand as C;
    use crate::store::{CreateTeam, MembershipChange};
    let membership = |change: MembershipChange| {
        crate::service::teams::membership_result(change)
            .map(|_| ())
            .map_err(api_error)
    };
    match command {
        C::List(args) => {
            let store = admin_store(&args.db).await?;
            for t in store.teams().await? {
                println!("{}  {}", t.slug, t.name);
            }
            Ok(())
        }
        C::Create(args) => {
            if !crate::service::teams::valid_slug(&args.slug) {
                anyhow::bail!("slug {:?}: 1 to 63 of a-z 0-9 and inner hyphens", args.slug);
            }
            let name = args.name.trim();
            if name.is_empty() || name.chars().count() > 200 {
                anyhow::bail!("--name: 1 to 200 characters");
            }
            let store = admin_store(&args.db).await?;
            let owner = match &args.owner {
                Some(who) => Some(find_user(&store, who).await?.id),
                None => None,
            };
            let now = now_ms();
            match store
                .create_team(
                    &args.slug,
                    name,
                    owner.as_deref(),
                    now,
                    revocation_expiry(now),
                )
                .await?
            {
                CreateTeam::Created(_) => {
                    println!("created team {}", args.slug);
                    audit(
                        &store,
                        "team_created",
                        serde_json::json!({"team": args.slug, "name": name, "owner": owner}),
                    )
                    .await;
                }
                CreateTeam::SlugTaken => anyhow::bail!("team {} exists", args.slug),
                CreateTeam::NoSuchOwner => anyhow::bail!("no such user (owner)"),
            }
            Ok(())
        }
        C::Delete(args) => {
            let store = admin_store(&args.db).await?;
            let now = now_ms();
            match store
                .delete_team(&args.slug, now, revocation_expiry(now))
                .await?
            {
                Some(records) => {
                    println!(
                        "deleted team {} ({} member(s) affected)",
                        args.slug,
                        records.len()
                    );
                    audit(
                        &store,
                        "team_deleted",
                        serde_json::json!({"team": args.slug}),
                    )
                    .await;
                }
                None => anyhow::bail!("no such team: {}", args.slug),
            }
            Ok(())
        }
        C::Members(args) => {
            let store = admin_store(&args.db).await?;
            if !store.team_exists(&args.slug).await? {
                anyhow::bail!("no such team: {}", args.slug);
            }
            for m in store.team_members(&args.slug).await? {
                println!("{}  {}  {}", m.user_id, m.email, m.role);
            }
            Ok(())
        }
        C::SetMember(args) => {
            let store = admin_store(&args.user.db).await?;
            let u = find_user(&store, &args.user.user).await?;
            let now = now_ms();
            membership(
                store
                    .set_membership(
                        &args.slug,
                        &u.id,
                        Some(&args.role),
                        now.div_euclid(1000),
                        now,
                        revocation_expiry(now),
                    )
                    .await?,
            )?;
            println!("{}: {} of {}", u.email, args.role, args.slug);
            audit(
                &store,
                "team_member_set",
                serde_json::json!({"team": args.slug, "user": u.id, "role": args.role}),
            )
            .await;
            Ok(())
        }
        C::RemoveMember(args) => {
            let store = admin_store(&args.user.db).await?;
            let u = find_user(&store, &args.user.user).await?;
            let now = now_ms();
            membership(
                store
                    .set_membership(
                        &args.slug,
                        &u.id,
                        None,
                        now.div_euclid(1000),
                        now,
                        revocation_expiry(now),
                    )
                    .await?,
            )?;
            println!("{} removed from {}", u.email, args.slug);
            audit(
                &store,
                "team_member_removed",
                serde_json::json!({"team": args.slug, "user": u.id}),
            )
            .await;
            Ok(())
        }
    }
}
