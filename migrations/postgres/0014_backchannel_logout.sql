-- OpenID Connect Back-Channel Logout: the URI a client registered, and one
-- delivery per ended session of a client that has one, retried until
-- delivered or given up. Kept a day after, then pruned.
ALTER TABLE oauth_clients ADD COLUMN backchannel_logout_uri TEXT;
CREATE TABLE oauth_logout_deliveries (
    session_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    uri TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    failed_at BIGINT
);
CREATE INDEX oauth_logout_deliveries_due ON oauth_logout_deliveries (next_at);
