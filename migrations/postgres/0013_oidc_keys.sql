-- Which tokens a key signs: 'access' (everything the edge verifies) or
-- 'id_token' (OpenID Connect ID tokens in RS256 while the access keys use
-- another algorithm). Each lane has its own current key and schedule.
ALTER TABLE signing_keys ADD COLUMN key_use TEXT NOT NULL DEFAULT 'access';

-- private_key_jwt (RFC 7523): a client's public keys (a JWK Set, JSON),
-- and the assertion ids it has used, each kept until the assertion expires
-- so a replay is refused on every replica.
ALTER TABLE oauth_clients ADD COLUMN jwks TEXT;
CREATE TABLE oauth_assertion_ids (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oauth_assertion_ids_expiry ON oauth_assertion_ids (expires_at);
