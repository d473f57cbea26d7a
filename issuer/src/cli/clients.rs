//! `issuer clients …`: the OAuth client registry from the shell, with the
//! same checks as the admin API (`service::oauth::clients::check`).

use super::{admin_store, api_error, audit, now_ms, revocation_expiry};
use crate::config::{ClientDescription, ClientsCommand};
use crate::domain::tokens::{random_b64, refresh_token_hash};
use crate::service::oauth::assertion::check_jwks;
use crate::service::oauth::clients::{
    check, check_update, exceeds, in_overlap, ClientView, NewClient, SECRET_OVERLAP_SECS,
};
use crate::store::Rotated;

fn print(c: &ClientView) {
    println!(
        "{}  {}  {}{}  redirect_uris=[{}]  scopes=[{}]  auth={}  grants=[{}]{}{}",
        c.client_id,
        c.kind,
        c.name,
        if c.first_party { "  first-party" } else { "" },
        c.redirect_uris.join(","),
        c.scopes.join(","),
        c.token_endpoint_auth_method,
        c.grant_types.join(","),
        c.access_token_ttl
            .map(|t| format!("  access_token_ttl={t}"))
            .unwrap_or_default(),
        c.refresh_token_ttl
            .map(|t| format!("  refresh_token_ttl={t}"))
            .unwrap_or_default(),
    );
}

fn read_jwks(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not JSON ({e})", path.display()))
}

/// A description from the command line, for `add` and `update`.
fn described(client_id: &str, d: &ClientDescription) -> NewClient {
    NewClient {
        client_id: client_id.to_string(),
        name: d.name.clone(),
        redirect_uris: d.redirect_uri.clone(),
        post_logout_redirect_uris: d.post_logout_redirect_uri.clone(),
        scopes: d.scope.clone(),
        first_party: d.first_party,
        backchannel_logout_uri: d.backchannel_logout_uri.clone(),
        audiences: d.audience.clone(),
        subject_clients: d.subject_client.clone(),
        serves: d.serves.clone(),
        grant_types: (!d.grant_type.is_empty()).then(|| d.grant_type.clone()),
        // Left out: the issuer's when added, as they were when updated.
        access_token_ttl: d.access_token_ttl.map(Some),
        refresh_token_ttl: d.refresh_token_ttl.map(Some),
        ..Default::default()
    }
}

pub async fn clients(command: &ClientsCommand) -> anyhow::Result<()> {
    match command {
        ClientsCommand::List(args) => {
            let store = admin_store(&args.db).await?;
            for c in store.clients().await? {
                print(&ClientView::from(&c));
            }
            Ok(())
        }
        ClientsCommand::Add(args) => {
            let jwks = args.jwks_file.as_deref().map(read_jwks).transpose()?;
            let new = NewClient {
                kind: if args.public {
                    "public".into()
                } else {
                    "confidential".into()
                },
                token_endpoint_auth_method: jwks.as_ref().map(|_| "private_key_jwt".into()),
                jwks,
                ..described(&args.client_id, &args.description)
            };
            // The issuer's own sign-in's id (as the admin API refuses it).
            let own = std::env::var("ISSUER_CLIENT_ID").unwrap_or_else(|_| "devmentor-auth".into());
            if new.client_id == own {
                anyhow::bail!("client_id: the issuer's own ({own}); choose another");
            }
            let (client, secret) = check(&new, now_ms().div_euclid(1000)).map_err(api_error)?;
            let store = admin_store(&args.db).await?;
            if !store.create_client(&client, "cli").await? {
                anyhow::bail!("client {} exists", client.id);
            }
            print(&ClientView::from(&client));
            if let Some(secret) = secret {
                // Shown once: only its hash is kept.
                println!("client_secret: {secret}");
            }
            audit(
                &store,
                "oauth_client_created",
                serde_json::json!({"client_id": client.id}),
            )
            .await;
            Ok(())
        }
        ClientsCommand::Update(args) => {
            let store = admin_store(&args.db).await?;
            let Some(found) = store.client(&args.client_id).await? else {
                anyhow::bail!("no such client: {}", args.client_id);
            };
            let new = NewClient {
                kind: ClientView::from(&found).kind.into(),
                ..described(&args.client_id, &args.description)
            };
            let changed = check_update(&found, &new).map_err(api_error)?;
            let now = now_ms();
            let Some(records) = store
                .update_client(&changed, exceeds, now, revocation_expiry(now))
                .await?
            else {
                anyhow::bail!("no such client: {}", args.client_id);
            };
            print(&ClientView::from(&changed));
            println!("{} session(s) ended", records.len());
            audit(
                &store,
                "oauth_client_updated",
                serde_json::json!({"client_id": changed.id, "sessions_ended": records.len()}),
            )
            .await;
            Ok(())
        }
        ClientsCommand::SetKeys(args) => {
            let jwks = check_jwks(&read_jwks(&args.jwks_file)?).map_err(api_error)?;
            let store = admin_store(&args.db).await?;
            if !store.set_client_jwks(&args.client_id, &jwks).await? {
                anyhow::bail!("no such private_key_jwt client: {}", args.client_id);
            }
            println!("keys replaced for {}", args.client_id);
            audit(
                &store,
                "oauth_client_keys_replaced",
                serde_json::json!({"client_id": args.client_id}),
            )
            .await;
            Ok(())
        }
        ClientsCommand::RotateSecret(args) => {
            let store = admin_store(&args.db).await?;
            let secret = format!("cs_{}", random_b64(32)?);
            let now = now_ms().div_euclid(1000);
            let until = if args.immediate {
                now
            } else {
                now + SECRET_OVERLAP_SECS
            };
            match store
                .rotate_client_secret(&args.client_id, &refresh_token_hash(&secret), until, now)
                .await?
            {
                Rotated::Done => {}
                Rotated::NoSuchClient => {
                    anyhow::bail!("no such confidential client: {}", args.client_id)
                }
                Rotated::InOverlap(until) => return Err(api_error(in_overlap(until))),
            }
            if args.immediate {
                // Published by the running issuers' feeds on their next poll.
                store
                    .revoke_own_tokens(&args.client_id, now * 1000, revocation_expiry(now * 1000))
                    .await?;
            }
            println!("client_secret: {secret}");
            audit(
                &store,
                "oauth_client_secret_rotated",
                serde_json::json!({"client_id": args.client_id, "immediate": args.immediate}),
            )
            .await;
            Ok(())
        }
        ClientsCommand::Delete(args) => {
            let store = admin_store(&args.db).await?;
            let now = now_ms();
            match store
                .delete_client(&args.client_id, now, revocation_expiry(now))
                .await?
            {
                Some(records) => {
                    println!(
                        "deleted client {} ({} session(s) ended)",
                        args.client_id,
                        records.len()
                    );
                    audit(
                        &store,
                        "oauth_client_deleted",
                        serde_json::json!({"client_id": args.client_id, "sessions_ended": records.len()}),
                    )
                    .await;
                    Ok(())
                }
                None => anyhow::bail!("no such client: {}", args.client_id),
            }
        }
    }
}
