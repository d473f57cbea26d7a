-- Sign-in through an external provider (GitHub). An identity is keyed on the
-- provider's stable id (GitHub's numeric user id: logins can be renamed);
-- login and email are kept only for display and audit.
CREATE TABLE identities (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    login TEXT NOT NULL,
    email TEXT,
    linked_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
-- One identity per provider per user.
CREATE UNIQUE INDEX identities_user_provider ON identities(user_id, provider);

-- Set when the address is known to belong to the user (a provider vouched
-- for it, or, later, a verification mail was followed).
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;

-- OAuth `state` values already spent: a callback succeeds once per state,
-- whichever replica serves it. Rows outlive the state cookie, then go.
CREATE TABLE oauth_states_used (
    state_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oauth_states_used_expiry ON oauth_states_used(expires_at);
