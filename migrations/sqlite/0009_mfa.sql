-- Second factors. A TOTP secret is sealed with the KEK; it is active once
-- confirmed with a valid code. last_step is the newest time step accepted,
-- so no step is ever accepted twice.
CREATE TABLE mfa_totp (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    sealed_secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT -1
);

-- Single-use recovery codes, stored as SHA-256 hashes (they are 100 random
-- bits each, not guessable).
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- Short-lived, single-use tickets between a correct first factor and the
-- second; limited attempts each.
CREATE TABLE mfa_tickets (
    ticket_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    amr TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    used_at BIGINT
);
CREATE INDEX mfa_tickets_expiry ON mfa_tickets(expires_at);

-- When the session's user last actively authenticated (sign-in or
-- step-up); NULL means at created_at.
ALTER TABLE sessions ADD COLUMN auth_time BIGINT;
