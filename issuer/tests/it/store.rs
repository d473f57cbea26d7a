//! The store's guarantees, on SQLite and PostgreSQL alike.

use auth_types::RevocationKind;
use issuer::store::{
    CreateUserError, NewRevocation, NewSession, OAuthBinding, Rotation, Store, User,
};

use crate::on_both_backends;
use crate::support::{database, Backend};

on_both_backends!(
    users_are_unique_by_email,
    refresh_rotation_is_compare_and_swap,
    session_revocation_is_recorded_once_and_in_order,
    revocations_expire_and_are_pruned,
    migrations_are_idempotent,
    a_session_opened_across_a_narrowing_update_ends,
);

async fn store(backend: Backend) -> Option<(Store, crate::support::Db)> {
    let db = database(backend).await?;
    let store = Store::connect(&db.url, 5).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some((store, db))
}

fn user(email: &str) -> User {
    User {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.into(),
        name: Some("N".into()),
        password_hash: "$argon2id$x".into(),
        roles: vec!["admin".into(), "dev".into()],
        created_at: 10,
        password_changed_at: 10,
        disabled_at: None,
        token_generation: 0,
        email_verified_at: None,
        avatar_url: None,
        metadata: "{}".into(),
        admin_metadata: "{}".into(),
    }
}

async fn session(store: &Store, user_id: &str, id: &str, refresh_hash: &str) {
    store
        .create_session(&NewSession {
            id,
            user_id,
            now: 100,
            idle_expires_at: 1_000,
            absolute_expires_at: 5_000,
            ip: Some("10.0.0.1"),
            user_agent: None,
            amr: "pwd",
            refresh_hash,
            opened_by: None,
            oauth: None,
        })
        .await
        .expect("session");
}

async fn users_are_unique_by_email(backend: Backend) {
    let Some((store, _db)) = store(backend).await else {
        return;
    };
    let u = user("a@example.com");
    store.create_user(&u).await.expect("create");
    assert!(matches!(
        store.create_user(&user("a@example.com")).await,
        Err(CreateUserError::EmailTaken)
    ));
    let found = store
        .user_by_email("a@example.com")
        .await
        .expect("db")
        .expect("found");
    assert_eq!(found, u);
    assert_eq!(store.user_by_id(&u.id).await.expect("db"), Some(u.clone()));
    assert!(store
        .user_by_email("b@example.com")
        .await
        .expect("db")
        .is_none());
    assert!(store
        .upgrade_password_hash(&u.id, "$argon2id$x", "$argon2id$y")
        .await
        .expect("db"));
    assert!(!store
        .upgrade_password_hash(&u.id, "$argon2id$x", "$argon2id$z")
        .await
        .expect("db"));
}

async fn refresh_rotation_is_compare_and_swap(backend: Backend) {
    let Some((store, _db)) = store(backend).await else {
        return;
    };
    let u = user("rot@example.com");
    store.create_user(&u).await.expect("create");
    session(&store, &u.id, "s1", "h1").await;
    let rotation = |old, new, sealed, now_ms: i64| Rotation {
        session_id: "s1",
        old_hash: old,
        new_hash: new,
        new_sealed: sealed,
        now_ms,
        idle_expires_at: now_ms / 1000 + 1_000,
    };
    assert!(store
        .rotate_refresh(&rotation("h1", "h2", Some(b"sealed-2"), 200_000))
        .await
        .expect("db"));
    assert!(
        !store
            .rotate_refresh(&rotation("h1", "h3", Some(b"sealed-3"), 201_000))
            .await
            .expect("db"),
        "h1 already rotated"
    );
    let old = store.find_refresh("h1").await.expect("db").expect("found");
    assert_eq!(old.rotated_at, Some(200));
    let successor = old.successor.expect("h1 knows its successor");
    assert_eq!(successor.rotated_at_ms, 200_000);
    assert_eq!(
        successor.sealed.as_deref(),
        Some(&b"sealed-2"[..]),
        "the winner's, not the loser's"
    );
    assert!(!successor.successor_rotated);
    let new = store.find_refresh("h2").await.expect("db").expect("found");
    assert_eq!(new.rotated_at, None);
    assert!(new.successor.is_none());
    assert_eq!(new.session.last_used_at, 200);
    assert_eq!(new.session.idle_expires_at, 1_200);
    assert!(store.find_refresh("h3").await.expect("db").is_none());

    // The next rotation: h1 is now two generations old and loses its sealed copy.
    assert!(store
        .rotate_refresh(&rotation("h2", "h4", Some(b"sealed-4"), 202_000))
        .await
        .expect("db"));
    let old = store.find_refresh("h1").await.expect("db").expect("found");
    let successor = old.successor.expect("still linked");
    assert!(successor.successor_rotated);
    assert_eq!(successor.sealed, None);
    let mid = store.find_refresh("h2").await.expect("db").expect("found");
    assert_eq!(
        mid.successor.and_then(|s| s.sealed).as_deref(),
        Some(&b"sealed-4"[..])
    );
}

async fn session_revocation_is_recorded_once_and_in_order(backend: Backend) {
    let Some((store, _db)) = store(backend).await else {
        return;
    };
    let u = user("rev@example.com");
    store.create_user(&u).await.expect("create");
    for (s, h) in [("s1", "h1"), ("s2", "h2"), ("s3", "h3")] {
        session(&store, &u.id, s, h).await;
    }
    let first = store
        .revoke_session("s1", "logout", 500_000, 2_000)
        .await
        .expect("db")
        .expect("revoked");
    assert_eq!(
        (first.kind, first.subject.as_str()),
        (RevocationKind::Session, "s1")
    );
    assert!(store
        .revoke_session("s1", "logout", 500_000, 2_000)
        .await
        .expect("db")
        .is_none());
    let rest = store
        .revoke_all_sessions(&u.id, "logout_all", 600_000, 2_000)
        .await
        .expect("db");
    assert_eq!(
        rest.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>(),
        ["s2", "s3"]
    );
    let all = store.revocations_after(0, 0, 10).await.expect("db");
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        store
            .revocations_after(all[0].seq, 0, 10)
            .await
            .expect("db")
            .len(),
        2
    );
    assert_eq!(store.last_revocation_seq().await.expect("db"), all[2].seq);
    assert!(store
        .live_sessions(&u.id, 100)
        .await
        .expect("db")
        .is_empty());
    let s1 = store.session("s1").await.expect("db").expect("exists");
    assert_eq!(s1.revoked_at, Some(500));
}

async fn revocations_expire_and_are_pruned(backend: Backend) {
    let Some((store, _db)) = store(backend).await else {
        return;
    };
    for (subject, expires_at) in [("j1", 100), ("j2", 300)] {
        store
            .record_revocation(&NewRevocation {
                kind: RevocationKind::Token,
                subject,
                issued_before: 0,
                created_at_ms: 1,
                expires_at,
            })
            .await
            .expect("record");
    }
    let live = store.revocations_after(0, 200, 10).await.expect("db");
    assert_eq!(
        live.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>(),
        ["j2"]
    );
    assert_eq!(store.prune(200, 0).await.expect("prune"), 1);
    assert_eq!(
        store.revocations_after(0, 0, 10).await.expect("db").len(),
        1
    );
    // Sequence numbers never go backwards, even after pruning.
    let last = store.last_revocation_seq().await.expect("db");
    let next = store
        .record_revocation(&NewRevocation {
            kind: RevocationKind::UserBefore,
            subject: "u",
            issued_before: 50,
            created_at_ms: 1,
            expires_at: 400,
        })
        .await
        .expect("record");
    assert!(next.seq > last);
}

async fn migrations_are_idempotent(backend: Backend) {
    let Some((store, db)) = store(backend).await else {
        return;
    };
    store.migrate().await.expect("second migrate is a no-op");
    let again = Store::connect(&db.url, 1).await.expect("reconnect");
    again.migrate().await.expect("migrate from another pool");
    again.ping().await.expect("ping");
}

/// The race an update and a code exchange can run: the exchange loaded the
/// client before the update, which committed before the session existed
/// (so its scan missed it). The exchange's check under the update's lock
/// ends the session; one the client still allows stays.
async fn a_session_opened_across_a_narrowing_update_ends(backend: Backend) {
    let Some((store, _db)) = store(backend).await else {
        return;
    };
    let u = user("race@example.com");
    store.create_user(&u).await.expect("create");
    let (mut client, _) = issuer::service::oauth::clients::check(
        &issuer::service::oauth::clients::NewClient {
            client_id: "race".into(),
            name: "Race".into(),
            kind: "public".into(),
            redirect_uris: vec!["https://app.test/cb".into()],
            scopes: vec!["openid".into(), "notes:read".into()],
            ..Default::default()
        },
        100,
    )
    .expect("client");
    assert!(store.create_client(&client, "test").await.expect("db"));
    // The update commits first: no sessions yet.
    client.scopes = vec!["openid".into()];
    let ended = store
        .update_client(
            &client,
            issuer::service::oauth::clients::exceeds,
            200_000,
            9_000,
        )
        .await
        .expect("db")
        .expect("client");
    assert!(ended.is_empty());
    // Then the exchange that loaded the old client opens its sessions.
    for (id, scope) in [("s-wide", "openid notes:read"), ("s-narrow", "openid")] {
        store
            .create_session(&NewSession {
                id,
                user_id: &u.id,
                now: 200,
                idle_expires_at: 1_000,
                absolute_expires_at: 5_000,
                ip: None,
                user_agent: None,
                amr: "pwd",
                refresh_hash: &format!("h-{id}"),
                opened_by: None,
                oauth: Some(OAuthBinding {
                    client_id: "race",
                    scope,
                    auth_time: 200,
                    resource: None,
                    access_ttl: None,
                    dpop_jkt: None,
                }),
            })
            .await
            .expect("session");
    }
    let check = |id: &'static str| {
        let store = &store;
        async move {
            store
                .end_if_client_narrowed(
                    id,
                    issuer::service::oauth::clients::exceeds,
                    201_000,
                    9_000,
                )
                .await
                .expect("db")
        }
    };
    let record = check("s-wide").await.expect("the wide session ends");
    assert_eq!(record.kind, RevocationKind::Session);
    assert!(check("s-narrow").await.is_none());
    assert!(store
        .session("s-wide")
        .await
        .expect("db")
        .expect("row")
        .revoked_at
        .is_some());
    assert!(store
        .session("s-narrow")
        .await
        .expect("db")
        .expect("row")
        .revoked_at
        .is_none());
}
