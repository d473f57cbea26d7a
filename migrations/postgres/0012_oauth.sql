-- OAuth 2.1 / OpenID Connect clients registered with the issuer. A
-- confidential client (one with a secret; public clients have none) has
-- its secret stored as a SHA-256 hash (secrets are 256
-- random bits, not guessable); `previous_secret_hash` keeps working until
-- `previous_expires_at`, so a rotation has an overlap.
CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT,
    previous_secret_hash TEXT,
    previous_expires_at BIGINT,
    -- JSON arrays of exact URIs.
    redirect_uris TEXT NOT NULL,
    post_logout_uris TEXT NOT NULL DEFAULT '[]',
    -- Space-separated scopes the client may ask for.
    scopes TEXT NOT NULL,
    -- First-party clients are not shown a consent screen.
    first_party BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    created_by TEXT
);

-- Authorization codes, by hash; single use. `session_id` is the session
-- the exchange opened, ended if the code is presented again.
CREATE TABLE oauth_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,
    amr TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    -- Set when a used code is presented again.
    reused_at BIGINT,
    session_id TEXT
);
CREATE INDEX oauth_codes_expiry ON oauth_codes(expires_at);

-- What a user allowed a (third-party) client, remembered.
CREATE TABLE oauth_consents (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- A session opened for an OAuth client: its tokens carry that client and
-- scope, and only that client may refresh it. NULL: the issuer's own.
ALTER TABLE sessions ADD COLUMN client_id TEXT;
ALTER TABLE sessions ADD COLUMN scope TEXT;
CREATE INDEX sessions_client ON sessions(client_id, user_id);
