//! Mail over SMTP (lettre), always through the outbox: a request enqueues
//! (its bodies sealed with the KEK, since a reset link is a credential),
//! and a worker on every replica claims due mail by lease, sends it, and
//! retries with doubling backoff. An SMTP outage delays mail; it loses none.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::config::MailArgs;
use crate::domain::tokens::new_id;
use crate::store::{NewMail, OutboxMail};
use crate::AppState;

/// A claimed mail is this replica's for this long; a replica that dies
/// mid-send leaves it to another after the lease (so delivery is at least
/// once, not exactly once).
const LEASE_MS: i64 = 60_000;
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
pub const BATCH: i64 = 20;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 3_600_000;
/// Finished mail is kept this long for operators, then deleted.
pub const KEEP_FINISHED_MS: i64 = 7 * 86_400_000;

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// This replica's name on the leases it takes.
    owner: String,
    /// Rung when a mail is enqueued, so the outbox sends it at once.
    pub wake: Notify,
    pub settings: MailArgs,
}

/// A mail ready to enqueue.
#[derive(Debug, Clone)]
pub struct Mail {
    pub kind: &'static str,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Serialize, Deserialize)]
struct Bodies {
    text: String,
    html: String,
}

impl Mailer {
    /// `None` when no SMTP URL is configured.
    pub fn from_settings(settings: &MailArgs) -> anyhow::Result<Option<Mailer>> {
        let Some(url) = &settings.smtp_url else {
            return Ok(None);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.0)
            .map_err(|e| anyhow::anyhow!("--smtp-url: {e}"))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from: Mailbox = settings
            .mail_from
            .parse()
            .map_err(|e| anyhow::anyhow!("--mail-from: {e}"))?;
        Ok(Some(Mailer {
            transport,
            from,
            owner: new_id(),
            wake: Notify::new(),
            settings: settings.clone(),
        }))
    }
}

/// Enqueues a mail. Without SMTP configured nothing is queued and this
/// returns false. Reaching the outbox is what a request waits for.
pub async fn send(state: &AppState, mail: Mail) -> anyhow::Result<bool> {
    {
        let Some(mailer) = &state.mailer else {
            tracing::debug!(kind = mail.kind, "mail is not configured; not sent");
            return Ok(false);
        };
        let id = new_id();
        let bodies = serde_json::to_vec(&Bodies {
            text: mail.text,
            html: mail.html,
        })?;
        let sealed = STANDARD.encode(state.keys.seal(&format!("mail:{id}"), &bodies)?);
        state
            .store
            .enqueue_mail(&NewMail {
                id: &id,
                kind: mail.kind,
                to: &mail.to,
                subject: &mail.subject,
                sealed_body: &sealed,
                now_ms: state.now().ms,
            })
            .await?;
        mailer.wake.notify_one();
        Ok(true)
    }
}

/// Sends what is due now, up to a batch. Returns how many mails it tried.
/// Mail is claimed one at a time, just before it is sent, so a lease never
/// runs out while the mail waits behind others in a slow batch.
pub async fn deliver_due(state: &AppState, mailer: &Mailer) -> anyhow::Result<usize> {
    let mut n = 0;
    while (n as i64) < BATCH {
        let now = state.now().ms;
        let Some(mail) = state
            .store
            .claim_mail(&mailer.owner, now, now + LEASE_MS, 1)
            .await?
            .pop()
        else {
            break;
        };
        n += 1;
        let result = deliver(state, mailer, &mail).await;
        let now = state.now().ms;
        match result {
            Ok(()) => {
                if !state.store.mail_sent(&mail.id, &mailer.owner, now).await? {
                    // Only if one send outlived the lease (a minute).
                    tracing::warn!(
                        id = mail.id,
                        "mail sent after its lease lapsed; another replica may send it again"
                    );
                }
                state.metrics.mail("sent");
                tracing::info!(id = mail.id, kind = mail.kind, "mail sent");
            }
            Err(e) => {
                let attempts = mail.attempts + 1;
                let retry = (attempts < mailer.settings.mail_max_attempts).then(|| {
                    let backoff = mailer
                        .settings
                        .mail_retry_base_ms
                        .saturating_mul(1_i64 << (attempts - 1).clamp(0, 20))
                        .min(MAX_BACKOFF_MS);
                    now + backoff
                });
                state
                    .store
                    .mail_failed(&mail.id, &mailer.owner, &e.to_string(), retry, now)
                    .await?;
                state
                    .metrics
                    .mail(if retry.is_some() { "retry" } else { "failed" });
                tracing::warn!(id = mail.id, kind = mail.kind, attempts, error = %e, gave_up = retry.is_none(), "mail delivery failed");
            }
        }
    }
    if let Ok(counts) = state.store.outbox_counts().await {
        state.metrics.mail_backlog.set(counts.pending);
    }
    Ok(n)
}

async fn deliver(state: &AppState, mailer: &Mailer, mail: &OutboxMail) -> anyhow::Result<()> {
    let sealed = STANDARD.decode(&mail.sealed_body)?;
    let bodies: Bodies = serde_json::from_slice(
        &state
            .keys
            .open_sealed(&format!("mail:{}", mail.id), &sealed)?,
    )?;
    // Only a bare address: a display name could hide another mailbox.
    let to = Mailbox::new(None, mail.to.parse::<lettre::Address>()?);
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(&mail.subject)
        .multipart(MultiPart::alternative_plain_html(bodies.text, bodies.html))?;
    mailer.transport.send(message).await?;
    Ok(())
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The mails the issuer sends: plain text and HTML of the same words.
pub mod templates {
    use super::{escape, Mail};

    fn html(title: &str, paragraphs: &[String], link: Option<(&str, &str)>) -> String {
        let mut body = String::new();
        for p in paragraphs {
            body.push_str(&format!("<p>{}</p>\n", escape(p)));
        }
        if let Some((label, url)) = link {
            body.push_str(&format!(
                "<p><a href=\"{}\">{}</a></p>\n<p style=\"color:#555;font-size:90%\">Or paste this address into your browser: {}</p>\n",
                escape(url),
                escape(label),
                escape(url)
            ));
        }
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
             <body style=\"font-family:sans-serif;max-width:36em\">\n<h1 style=\"font-size:1.3em\">{}</h1>\n{body}</body></html>\n",
            escape(title),
            escape(title)
        )
    }

    fn text(paragraphs: &[String], link: Option<&str>) -> String {
        let mut out = paragraphs.join("\n\n");
        if let Some(url) = link {
            out.push_str("\n\n");
            out.push_str(url);
        }
        out.push_str("\n\n-- \nDevMentor Auth\n");
        out
    }

    pub fn verify_email(to: &str, link: &str, ttl: &str) -> Mail {
        let subject = "Confirm your email address".to_string();
        let p = vec![
            format!("Someone (we hope you) created a DevMentor account with {to}."),
            format!("Open the link below within {ttl} to confirm that this address is yours. If it was not you, ignore this mail."),
        ];
        Mail {
            kind: "verify_email",
            to: to.to_string(),
            html: html(&subject, &p, Some(("Confirm my email address", link))),
            text: text(&p, Some(link)),
            subject,
        }
    }

    pub fn account_exists(to: &str) -> Mail {
        let subject = "You already have an account".to_string();
        let p = vec![
            format!("Someone (we hope you) tried to create a DevMentor account with {to}, which already has one."),
            "If it was you, sign in, or reset your password from the sign-in page if you forgot it. If it was not you, ignore this mail: nothing changed.".to_string(),
        ];
        Mail {
            kind: "account_exists",
            to: to.to_string(),
            html: html(&subject, &p, None),
            text: text(&p, None),
            subject,
        }
    }

    pub fn password_reset(to: &str, link: &str, ttl: &str) -> Mail {
        let subject = "Reset your password".to_string();
        let p = vec![
            "Someone asked to reset the password of the DevMentor account with this address.".to_string(),
            format!("To choose a new password, open the link below within {ttl}. It works once. Resetting signs you out everywhere."),
            "If you did not ask for this, ignore this mail: your password stays as it is.".to_string(),
        ];
        Mail {
            kind: "password_reset",
            to: to.to_string(),
            html: html(&subject, &p, Some(("Choose a new password", link))),
            text: text(&p, Some(link)),
            subject,
        }
    }

    pub fn password_changed(to: &str, how: &str, ip: Option<&str>) -> Mail {
        let subject = "Your password was changed".to_string();
        let p = vec![
            format!(
                "The password of your DevMentor account was changed ({how}) from {}. Every session was signed out.",
                ip.unwrap_or("an unknown address")
            ),
            "If this was not you, reset your password at once and contact your administrator.".to_string(),
        ];
        Mail {
            kind: "password_changed",
            to: to.to_string(),
            html: html(&subject, &p, None),
            text: text(&p, None),
            subject,
        }
    }

    pub fn mfa_changed(to: &str, what: &str) -> Mail {
        let subject = "Your sign-in security changed".to_string();
        let p = vec![
            what.to_string(),
            "If this was not you, reset your password at once and contact your administrator."
                .to_string(),
        ];
        Mail {
            kind: "mfa_changed",
            to: to.to_string(),
            html: html(&subject, &p, None),
            text: text(&p, None),
            subject,
        }
    }

    pub fn personal_token_created(to: &str, name: &str, scope: &str) -> Mail {
        let subject = "A personal access token was created".to_string();
        let p = vec![
            format!("A personal access token named \"{name}\" (scope: {scope}) was created on your DevMentor account."),
            "If this was not you, revoke it on your account page, reset your password at once and contact your administrator."
                .to_string(),
        ];
        Mail {
            kind: "personal_token_created",
            to: to.to_string(),
            html: html(&subject, &p, None),
            text: text(&p, None),
            subject,
        }
    }

    pub fn new_device(to: &str, user_agent: Option<&str>, ip: Option<&str>, when: &str) -> Mail {
        let subject = "New sign-in to your account".to_string();
        let p = vec![
            format!(
                "Your DevMentor account was signed in to from a device it has not seen before, at {when} (UTC)."
            ),
            format!("Device: {}", user_agent.unwrap_or("unknown")),
            format!("Address: {}", ip.unwrap_or("unknown")),
            "If this was you, there is nothing to do. If not, change your password and end the session from your account's session list.".to_string(),
        ];
        Mail {
            kind: "new_device",
            to: to.to_string(),
            html: html(&subject, &p, None),
            text: text(&p, None),
            subject,
        }
    }
}
