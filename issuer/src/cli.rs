//! One-shot administrative commands that work on the database directly,
//! also while servers run.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{CreateUserArgs, DbArgs};
use crate::db::{CreateUserError, Store, User};
use crate::password::{weakness, PasswordHasher};
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
    let hasher = PasswordHasher::new(19_456, 2, 1, 1)?;
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
