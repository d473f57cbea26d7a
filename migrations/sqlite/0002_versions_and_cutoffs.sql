-- The signing key set's version: bumped in the same transaction as every
-- key change, published in the JWKS, so a sidecar never installs a key set
-- older than one it has seen (from a replica that has not caught up).
CREATE TABLE key_set_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO key_set_version (id, version) VALUES (1, 1);

-- Tokens for a user are never minted with an `iat` before this (Unix
-- seconds): after a role change or disable writes a user-before revocation
-- at the next second, fresh tokens in the same second are not caught by it.
ALTER TABLE users ADD COLUMN tokens_not_before BIGINT NOT NULL DEFAULT 0;
