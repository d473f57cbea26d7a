-- One event shape for the audit trail: who did what to whom, from where,
-- with what outcome. Replaces audit_log; its rows are carried over (the old
-- free-text detail kept under metadata.legacy_detail).
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor_id TEXT,
    target_id TEXT,
    email TEXT,
    ip TEXT,
    user_agent TEXT,
    session_id TEXT,
    reason TEXT,
    trace_id TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO audit_events (at_ms, action, outcome, actor_id, target_id, email, ip, metadata)
SELECT at * 1000, event,
       CASE WHEN event LIKE '%failure%' OR event LIKE '%refused%' OR event LIKE '%disabled%' THEN 'failure' ELSE 'success' END,
       user_id, user_id, email, ip,
       CASE WHEN detail IS NULL THEN '{}' ELSE json_object('legacy_detail', detail) END
FROM audit_log ORDER BY id;
DROP TABLE audit_log;
CREATE INDEX audit_events_at ON audit_events(at_ms);
CREATE INDEX audit_events_action ON audit_events(action, id);
CREATE INDEX audit_events_actor ON audit_events(actor_id, id);
CREATE INDEX audit_events_target ON audit_events(target_id, id);

-- Mail waits here until an SMTP server took it: an outage loses nothing,
-- and a lease (claimed by compare-and-set) lets one replica send each mail.
CREATE TABLE mail_outbox (
    id TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    to_addr TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    sent_at_ms BIGINT,
    failed_at_ms BIGINT,
    last_error TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox(sent_at_ms, failed_at_ms, next_attempt_at_ms);

-- Single-use tokens mailed to a user (email verification, password reset),
-- stored only as SHA-256 hashes.
CREATE TABLE email_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    email TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX email_tokens_user ON email_tokens(user_id, purpose);
CREATE INDEX email_tokens_expiry ON email_tokens(expires_at);

-- Devices a user has signed in from (a hash of the user agent), so a
-- sign-in from an unfamiliar one can be told to the user.
CREATE TABLE known_devices (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_hash TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_hash)
);
