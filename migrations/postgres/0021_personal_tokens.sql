-- Personal access tokens. Each is a session of its own (same id): its
-- scope, second factor, expiry and revocation live on that row, so ending
-- it reaches the edge as any session's end does. Here only what a session
-- lacks: the name the user gave it, the token's hash, its last exchange.
CREATE TABLE personal_tokens (
    id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX personal_tokens_user ON personal_tokens(user_id);
