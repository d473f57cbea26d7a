//! OAuth clients, authorization codes and remembered consent.

use auth_types::RevocationRecord;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::revocations::{insert_revocation, NewRevocation};
use super::sessions::{revoke_one_session, revoke_sessions_where, Which};
use super::*;
use crate::domain::oauth::{JWT_BEARER, TOKEN_EXCHANGE};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    pub id: String,
    pub name: String,
    /// `None` for a public client (it authenticates with nothing).
    pub secret_hash: Option<String>,
    /// The secret before the last rotation, valid until `previous_expires_at`.
    pub previous_secret_hash: Option<String>,
    pub previous_expires_at: Option<i64>,
    pub redirect_uris: Vec<String>,
    pub post_logout_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub first_party: bool,
    pub created_at: i64,
    /// `private_key_jwt`: the client's public keys (a JWK Set, JSON); such
    /// a client has no secret.
    pub jwks: Option<String>,
    /// Where logout tokens go when one of its sessions ends.
    pub backchannel_logout_uri: Option<String>,
    /// Resources (RFC 8707) it may ask tokens for.
    pub audiences: Vec<String>,
    /// Token exchange: the clients whose users' tokens it may trade.
    pub subject_clients: Vec<String>,
    /// Resources it serves: it may introspect tokens for them.
    pub serves: Vec<String>,
    /// When it last used a service grant (Unix seconds), as last written.
    pub last_used_at: Option<i64>,
    /// The grants it may use at the token endpoint.
    pub grant_types: Vec<String>,
    /// Its access tokens' lifetime in seconds (`None`: the issuer's).
    pub access_token_ttl: Option<i64>,
    /// Its sessions' (refresh tokens') absolute lifetime in seconds.
    pub refresh_token_ttl: Option<i64>,
    /// Raised by every change of its description.
    pub version: i64,
}

impl OAuthClient {
    pub fn confidential(&self) -> bool {
        self.secret_hash.is_some() || self.jwks.is_some()
    }

    pub fn may_use(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// Every token a client holds as itself, up to now (the second it ends
/// in included: none is issued after).
fn own_tokens_revoked(subject: &str, now_ms: i64, expires_at: i64) -> NewRevocation<'_> {
    NewRevocation {
        kind: auth_types::RevocationKind::UserBefore,
        subject,
        issued_before: now_ms.div_euclid(1000) + 1,
        created_at_ms: now_ms,
        expires_at,
    }
}

/// What a secret rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotated {
    Done,
    /// No confidential client with a secret by that id.
    NoSuchClient,
    /// The secret before still works until then: rotating again with an
    /// overlap would stop it at once.
    InOverlap(Option<i64>),
}

/// An authorization code as issued, found by its hash.
#[derive(Debug, Clone)]
pub struct NewCode<'a> {
    pub code_hash: &'a str,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub amr: &'a str,
    pub auth_time: i64,
    pub now: i64,
    pub expires_at: i64,
    /// The resource (RFC 8707) asked for, if any.
    pub resource: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct Code {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub amr: String,
    pub auth_time: i64,
    pub resource: Option<String>,
}

/// What presenting a code found.
#[derive(Debug)]
pub enum Redeemed {
    /// Unused and unexpired: now used, and `session_id` is the session the
    /// exchange is to open.
    Fresh(Code),
    /// Used before: the session it opened (if any yet) was ended.
    Replayed {
        client_id: String,
        user_id: String,
        records: Vec<RevocationRecord>,
    },
    /// Unknown or expired.
    Invalid,
}

const CLIENT_COLUMNS: &str = "id, name, secret_hash, previous_secret_hash, previous_expires_at, \
     redirect_uris, post_logout_uris, scopes, first_party, created_at, jwks, backchannel_logout_uri, audiences, \
     grant_types, access_token_ttl, refresh_token_ttl, version, subject_clients, serves, last_used_at";

fn client_from_row(row: &AnyRow) -> sqlx::Result<OAuthClient> {
    let list = |name: &str| -> sqlx::Result<Vec<String>> {
        let text: String = row.try_get(name)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(e.into()))
    };
    let scopes: String = row.try_get("scopes")?;
    Ok(OAuthClient {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        previous_secret_hash: row.try_get("previous_secret_hash")?,
        previous_expires_at: row.try_get("previous_expires_at")?,
        redirect_uris: list("redirect_uris")?,
        post_logout_uris: list("post_logout_uris")?,
        scopes: scopes.split_whitespace().map(str::to_string).collect(),
        first_party: row.try_get::<i64, _>("first_party")? != 0,
        created_at: row.try_get("created_at")?,
        jwks: row.try_get("jwks")?,
        backchannel_logout_uri: row.try_get("backchannel_logout_uri")?,
        audiences: list("audiences")?,
        subject_clients: list("subject_clients")?,
        serves: list("serves")?,
        last_used_at: row.try_get("last_used_at")?,
        grant_types: list("grant_types")?,
        access_token_ttl: row.try_get("access_token_ttl")?,
        refresh_token_ttl: row.try_get("refresh_token_ttl")?,
        version: row.try_get("version")?,
    })
}

fn json_list(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

impl Store {
    // ---- OAuth clients ----

    /// Registers `c`; false when its id is taken.
    pub async fn create_client(&self, c: &OAuthClient, created_by: &str) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO oauth_clients (id, name, secret_hash, redirect_uris, post_logout_uris, \
             scopes, first_party, created_at, created_by, jwks, backchannel_logout_uri, audiences, \
             grant_types, access_token_ttl, refresh_token_ttl, subject_clients, serves) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(c.secret_hash.clone())
        .bind(json_list(&c.redirect_uris))
        .bind(json_list(&c.post_logout_uris))
        .bind(c.scopes.join(" "))
        .bind(i64::from(c.first_party))
        .bind(c.created_at)
        .bind(created_by)
        .bind(c.jwks.clone())
        .bind(c.backchannel_logout_uri.clone())
        .bind(json_list(&c.audiences))
        .bind(json_list(&c.grant_types))
        .bind(c.access_token_ttl)
        .bind(c.refresh_token_ttl)
        .bind(json_list(&c.subject_clients))
        .bind(json_list(&c.serves))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn client(&self, id: &str) -> sqlx::Result<Option<OAuthClient>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// Whether any client is registered (then ID tokens need their key).
    pub async fn has_clients(&self) -> sqlx::Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM (SELECT 1 FROM oauth_clients LIMIT 1) c")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    pub async fn clients(&self) -> sqlx::Result<Vec<OAuthClient>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(client_from_row).collect()
    }

    /// A new secret for a confidential client; the old one keeps working
    /// until `previous_until`. A rotation with an overlap (`previous_until`
    /// after `now`) is refused while the secret before is still in its own
    /// overlap: it would stop the secret deployments may still be using.
    pub async fn rotate_client_secret(
        &self,
        id: &str,
        new_hash: &str,
        previous_until: i64,
        now: i64,
    ) -> sqlx::Result<Rotated> {
        let done = sqlx::query(
            "UPDATE oauth_clients SET previous_secret_hash = secret_hash, \
             previous_expires_at = $1, secret_hash = $2 \
             WHERE id = $3 AND secret_hash IS NOT NULL \
             AND ($1 <= $4 OR previous_expires_at IS NULL OR previous_expires_at <= $4)",
        )
        .bind(previous_until)
        .bind(new_hash)
        .bind(id)
        .bind(now)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Rotated::Done);
        }
        Ok(match self.client(id).await? {
            Some(c) if c.secret_hash.is_some() => Rotated::InOverlap(c.previous_expires_at),
            _ => Rotated::NoSuchClient,
        })
    }

    /// Replaces what an admin may change about a client (not its id, kind
    /// or credentials) and, in the same transaction, ends its live sessions
    /// whose grant `exceeds` the new description (a scope or resource it
    /// may no longer ask for). `c.version` is the version it was made from:
    /// `None` when there is no such client at that version (another change
    /// came first, or it is gone).
    pub async fn update_client(
        &self,
        c: &OAuthClient,
        exceeds: impl Fn(&OAuthClient, Option<&str>, Option<&str>) -> bool,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Option<Vec<RevocationRecord>>> {
        let mut tx = self.begin_revoking().await?;
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1");
        let Some(before) = sqlx::query(&sql)
            .bind(&c.id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(client_from_row)
            .transpose()?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        // No longer first-party: sessions opened without the user's consent
        // (first-party clients skip it) end unless a consent covers them.
        let demoted = before.first_party && !c.first_party;
        // Its tokens as itself (client_credentials) and for users (token
        // exchange) carry no session of their own: any scope, resource or
        // such grant taken away ends them all (the service asks again for
        // what it still may have).
        let lost = |old: &[String], new: &[String]| old.iter().any(|x| !new.contains(x));
        let grant_lost = |g: &str| before.may_use(g) && !c.may_use(g);
        let acts = before.may_use("client_credentials")
            || before.may_use(TOKEN_EXCHANGE)
            || before.may_use(JWT_BEARER);
        let own_tokens_narrowed = acts
            && (lost(&before.scopes, &c.scopes)
                || lost(&before.audiences, &c.audiences)
                || lost(&before.subject_clients, &c.subject_clients)
                || grant_lost("client_credentials")
                || grant_lost(JWT_BEARER)
                || grant_lost(TOKEN_EXCHANGE));
        let updated = sqlx::query(
            "UPDATE oauth_clients SET name = $2, redirect_uris = $3, post_logout_uris = $4, \
             scopes = $5, first_party = $6, backchannel_logout_uri = $7, audiences = $8, \
             grant_types = $9, access_token_ttl = $10, refresh_token_ttl = $11, \
             subject_clients = $13, serves = $14, \
             version = version + 1 WHERE id = $1 AND version = $12",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(json_list(&c.redirect_uris))
        .bind(json_list(&c.post_logout_uris))
        .bind(c.scopes.join(" "))
        .bind(i64::from(c.first_party))
        .bind(c.backchannel_logout_uri.clone())
        .bind(json_list(&c.audiences))
        .bind(json_list(&c.grant_types))
        .bind(c.access_token_ttl)
        .bind(c.refresh_token_ttl)
        .bind(c.version)
        .bind(json_list(&c.subject_clients))
        .bind(json_list(&c.serves))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let now = now_ms.div_euclid(1000);
        // Shorter lifetimes reach the live sessions too (never longer).
        if let Some(ttl) = c.access_token_ttl {
            sqlx::query(
                "UPDATE sessions SET access_ttl = $2 WHERE client_id = $1 \
                 AND revoked_at IS NULL AND (access_ttl IS NULL OR access_ttl > $2)",
            )
            .bind(&c.id)
            .bind(ttl)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(ttl) = c.refresh_token_ttl {
            sqlx::query(
                "UPDATE sessions SET absolute_expires_at = created_at + $2, \
                 idle_expires_at = CASE WHEN idle_expires_at > created_at + $2 \
                 THEN created_at + $2 ELSE idle_expires_at END \
                 WHERE client_id = $1 AND revoked_at IS NULL \
                 AND absolute_expires_at > created_at + $2",
            )
            .bind(&c.id)
            .bind(ttl)
            .execute(&mut *tx)
            .await?;
        }
        let live = sqlx::query(
            "SELECT s.id, s.scope, s.resource, c.scope AS consented FROM sessions s \
             LEFT JOIN oauth_consents c ON c.user_id = s.user_id AND c.client_id = s.client_id \
             WHERE s.client_id = $1 AND s.revoked_at IS NULL \
             AND s.idle_expires_at > $2 AND s.absolute_expires_at > $2",
        )
        .bind(&c.id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut records = Vec::new();
        for row in &live {
            let scope: Option<String> = row.try_get("scope")?;
            let resource: Option<String> = row.try_get("resource")?;
            let consented: Option<String> = row.try_get("consented")?;
            let unconsented = demoted
                && !crate::domain::oauth::consent_covers(
                    consented.as_deref(),
                    scope.as_deref().unwrap_or_default(),
                );
            if unconsented || exceeds(c, scope.as_deref(), resource.as_deref()) {
                let id: String = row.try_get("id")?;
                records.extend(
                    revoke_one_session(
                        &mut tx,
                        &id,
                        "client_narrowed",
                        now_ms,
                        revocation_expires_at,
                    )
                    .await?,
                );
            }
        }
        if own_tokens_narrowed {
            records.push(
                insert_revocation(
                    &mut tx,
                    &own_tokens_revoked(
                        &crate::domain::oauth::client_subject(&c.id),
                        now_ms,
                        revocation_expires_at,
                    ),
                )
                .await?,
            );
        }
        tx.commit().await?;
        Ok(Some(records))
    }

    /// Ends every token a client holds as itself (`client_credentials`):
    /// its secret leaked.
    pub async fn revoke_own_tokens(
        &self,
        client_id: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<RevocationRecord> {
        let subject = crate::domain::oauth::client_subject(client_id);
        self.record_revocation(&own_tokens_revoked(&subject, now_ms, revocation_expires_at))
            .await
    }

    /// A session just opened for a client, checked against the client as
    /// it is now, under the same lock as [`Store::update_client`]: if an
    /// update narrowed the client while the session was being opened (and
    /// its scan missed it), the session ends here. Its record, if it ended.
    pub async fn end_if_client_narrowed(
        &self,
        session_id: &str,
        exceeds: impl Fn(&OAuthClient, Option<&str>, Option<&str>) -> bool,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Option<RevocationRecord>> {
        let mut tx = self.begin_revoking().await?;
        let row = sqlx::query(
            "SELECT client_id, scope, resource FROM sessions WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(session_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let client_id: Option<String> = row.try_get("client_id")?;
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1");
        let client = match client_id {
            Some(id) => sqlx::query(&sql)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(client_from_row)
                .transpose()?,
            None => None,
        };
        let scope: Option<String> = row.try_get("scope")?;
        let resource: Option<String> = row.try_get("resource")?;
        // A client deleted meanwhile ended its sessions itself.
        let narrowed = client.is_some_and(|c| exceeds(&c, scope.as_deref(), resource.as_deref()));
        let record = if narrowed {
            revoke_one_session(
                &mut tx,
                session_id,
                "client_narrowed",
                now_ms,
                revocation_expires_at,
            )
            .await?
        } else {
            None
        };
        tx.commit().await?;
        Ok(record)
    }

    /// Deletes the client and ends every session opened for it (their
    /// revocation records are returned). `None` when there was no client.
    pub async fn delete_client(
        &self,
        id: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Option<Vec<RevocationRecord>>> {
        let mut tx = self.begin_revoking().await?;
        let users: Vec<String> = sqlx::query(
            "SELECT DISTINCT user_id FROM sessions WHERE client_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("user_id"))
        .collect::<sqlx::Result<_>>()?;
        let mut records = Vec::new();
        for user in &users {
            let which = Which::OfClient(id);
            records.extend(
                revoke_sessions_where(
                    &mut tx,
                    user,
                    which,
                    "client_deleted",
                    now_ms,
                    revocation_expires_at,
                )
                .await?,
            );
        }
        let deleted = sqlx::query("DELETE FROM oauth_clients WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        // Its own tokens (client_credentials), and those it got for users
        // (token exchange: `act` names it), end too.
        records.push(
            insert_revocation(
                &mut tx,
                &own_tokens_revoked(
                    &crate::domain::oauth::client_subject(id),
                    now_ms,
                    revocation_expires_at,
                ),
            )
            .await?,
        );
        tx.commit().await?;
        records.sort_by_key(|r| r.seq);
        Ok(Some(records))
    }

    // ---- authorization codes ----

    pub async fn insert_code(&self, c: &NewCode<'_>) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_id, user_id, redirect_uri, \
             code_challenge, scope, nonce, amr, auth_time, created_at, expires_at, resource) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(c.code_hash)
        .bind(c.client_id)
        .bind(c.user_id)
        .bind(c.redirect_uri)
        .bind(c.code_challenge)
        .bind(c.scope)
        .bind(c.nonce.map(str::to_string))
        .bind(c.amr)
        .bind(c.auth_time)
        .bind(c.now)
        .bind(c.expires_at)
        .bind(c.resource.map(str::to_string))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Spends the code `code_hash` for the session `session_id` (which the
    /// caller opens next). Of two concurrent redemptions exactly one is
    /// `Fresh`; the other, and any later one, is `Replayed` and ends the
    /// session the first opened.
    pub async fn redeem_code(
        &self,
        code_hash: &str,
        session_id: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Redeemed> {
        let now = now_ms.div_euclid(1000);
        let won = sqlx::query(
            "UPDATE oauth_codes SET used_at = $1, session_id = $2 \
             WHERE code_hash = $3 AND used_at IS NULL AND expires_at > $1 \
             RETURNING client_id, user_id, redirect_uri, code_challenge, scope, nonce, amr, auth_time, \
             resource",
        )
        .bind(now)
        .bind(session_id)
        .bind(code_hash)
        .fetch_optional(&self.writer)
        .await?;
        if let Some(row) = won {
            return Ok(Redeemed::Fresh(Code {
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
                redirect_uri: row.try_get("redirect_uri")?,
                code_challenge: row.try_get("code_challenge")?,
                scope: row.try_get("scope")?,
                nonce: row.try_get("nonce")?,
                amr: row.try_get("amr")?,
                auth_time: row.try_get("auth_time")?,
                resource: row.try_get("resource")?,
            }));
        }
        let mut tx = self.begin_revoking().await?;
        let replayed = sqlx::query(
            "UPDATE oauth_codes SET reused_at = $1 WHERE code_hash = $2 AND used_at IS NOT NULL \
             RETURNING client_id, user_id, session_id",
        )
        .bind(now)
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = replayed else {
            tx.rollback().await?;
            return Ok(Redeemed::Invalid);
        };
        let issued: Option<String> = row.try_get("session_id")?;
        let mut records = Vec::new();
        if let Some(sid) = issued {
            records.extend(
                revoke_one_session(
                    &mut tx,
                    &sid,
                    "code_replayed",
                    now_ms,
                    revocation_expires_at,
                )
                .await?,
            );
        }
        tx.commit().await?;
        Ok(Redeemed::Replayed {
            client_id: row.try_get("client_id")?,
            user_id: row.try_get("user_id")?,
            records,
        })
    }

    /// Whether the code was presented again (after its session was
    /// opened, the opener checks: a replay racing the exchange may have
    /// found no session to end yet).
    ///
    /// On PostgreSQL the read waits for the code row's lock: a replay whose
    /// transaction marked the code (and found no session yet) commits
    /// first, and this read then sees it. SQLite has one writer at a time.
    pub async fn code_replayed(&self, code_hash: &str) -> sqlx::Result<bool> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT reused_at FROM oauth_codes WHERE code_hash = $1 FOR UPDATE"
            }
            Backend::Sqlite => "SELECT reused_at FROM oauth_codes WHERE code_hash = $1",
        };
        let row = sqlx::query(sql)
            .bind(code_hash)
            .fetch_optional(&self.writer)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<i64>, _>("reused_at")?.is_some(),
            None => false,
        })
    }

    /// Deletes codes that expired before `before` (a replay of one is then
    /// just unknown), and assertion ids whose assertions have expired (a
    /// replay of one is then refused for its expiry).
    pub async fn prune_codes(&self, before: i64) -> sqlx::Result<u64> {
        let done = sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        let ids = sqlx::query("DELETE FROM oauth_assertion_ids WHERE expires_at < $1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        let devices = self.prune_device_codes(before).await?;
        Ok(done.rows_affected() + ids.rows_affected() + devices)
    }

    // ---- private_key_jwt ----

    /// Records a client assertion's `jti`; false when the client used it
    /// before (a replay), on any replica.
    pub async fn use_assertion_id(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO oauth_assertion_ids (client_id, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id, jti) DO NOTHING",
        )
        .bind(client_id)
        .bind(jti)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a `private_key_jwt` client's keys (a rotation publishes old
    /// and new together, then the new alone). False when there is no such
    /// client using keys.
    pub async fn set_client_jwks(&self, id: &str, jwks: &str) -> sqlx::Result<bool> {
        let done =
            sqlx::query("UPDATE oauth_clients SET jwks = $1 WHERE id = $2 AND jwks IS NOT NULL")
                .bind(jwks)
                .bind(id)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- consent ----

    pub async fn consent(&self, user_id: &str, client_id: &str) -> sqlx::Result<Option<String>> {
        let row =
            sqlx::query("SELECT scope FROM oauth_consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| r.try_get("scope")).transpose()
    }

    pub async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO oauth_consents (user_id, client_id, scope, granted_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = $3, granted_at = $4",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(scope)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Withdraws the consent and ends the client's sessions of this user.
    /// `None` when there was no consent.
    pub async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now_ms: i64,
        revocation_expires_at: i64,
    ) -> sqlx::Result<Option<Vec<RevocationRecord>>> {
        let mut tx = self.begin_revoking().await?;
        let gone = sqlx::query("DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let records = revoke_sessions_where(
            &mut tx,
            user_id,
            Which::OfClient(client_id),
            "consent_revoked",
            now_ms,
            revocation_expires_at,
        )
        .await?;
        if gone == 0 && records.is_empty() {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(records))
    }

    /// The clients the user allowed, or holds live sessions of.
    pub async fn connected_clients(
        &self,
        user_id: &str,
        now: i64,
    ) -> sqlx::Result<Vec<(OAuthClient, Option<String>)>> {
        let sql = format!(
            "SELECT {CLIENT_COLUMNS}, (SELECT scope FROM oauth_consents k \
             WHERE k.user_id = $1 AND k.client_id = c.id) AS consent \
             FROM oauth_clients c WHERE EXISTS (SELECT 1 FROM oauth_consents k \
             WHERE k.user_id = $1 AND k.client_id = c.id) \
             OR EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = $1 AND s.client_id = c.id \
             AND s.revoked_at IS NULL AND s.idle_expires_at > $2 AND s.absolute_expires_at > $2) \
             ORDER BY c.id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((client_from_row(r)?, r.try_get("consent")?)))
            .collect()
    }
}
