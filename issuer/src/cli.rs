//! One-shot administrative commands that work on the database directly,
//! also while servers run.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{CreateUserArgs, DbArgs};
use crate::password::{weakness, PasswordHasher};
use crate::store::{CreateUserError, Store, User};
use crate::tokens::{new_id, random_b64};

pub async fn migrate(db: &DbArgs) -> anyhow::Result<()> {
    let store = Store::connect(&db.database_url, 1).await?;
    store.migrate().await?;
    println!("migrations applied");
    Ok(())
}

pub async fn create_user(args: &CreateUserArgs) -> anyhow::Result<()> {
    let store = Store::connect(&args.db.database_url, 1).await?;
    store.migrate().await?;
    let email = crate::api::auth::normalize_email(&args.email)
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

async fn key_context(args: &crate::config::KeysArgs) -> anyhow::Result<(Store, crate::keys::Kek)> {
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
    match crate::feed::FeedHub::new(Some(url), 1) {
        Ok(hub) => hub.keys_changed(version, true).await,
        Err(e) => eprintln!("issuer: cannot reach redis to announce the change: {e}"),
    }
}

fn print_keys(keys: &[crate::store::StoredKey]) {
    println!(
        "{:<18} {:<6} {:<8} {:>12} {:>12} {:>12} {:>12}",
        "KID", "ALG", "STATE", "CREATED", "ACTIVATES", "RETIRES", "REMOVES"
    );
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |t| t.to_string());
    for k in keys {
        println!(
            "{:<18} {:<6} {:<8} {:>12} {:>12} {:>12} {:>12}",
            k.kid,
            k.alg,
            k.state,
            k.created_at,
            k.activates_at,
            opt(k.retires_at),
            opt(k.removes_at)
        );
    }
}

pub async fn keys(command: &crate::config::KeysCommand) -> anyhow::Result<()> {
    use crate::config::KeysCommand;
    use crate::rotation;
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
            let maker = rotation::KeyMaker {
                kek: &kek,
                alg: life.alg,
                now,
            };
            let changes = store
                .change_keys(|keys| {
                    rotation::plan_rotate(keys, now, &life, args.now, &mut |st, at| {
                        maker.make(st, at)
                    })
                })
                .await?;
            if let Some(kid) = crate::api::admin::created_kid(&changes) {
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
            let maker = rotation::KeyMaker {
                kek: &kek,
                alg: args.common.keys.signing_alg,
                now,
            };
            store
                .change_keys(|keys| {
                    rotation::plan_revoke(keys, &args.kid, now, &mut |st, at| maker.make(st, at))
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
