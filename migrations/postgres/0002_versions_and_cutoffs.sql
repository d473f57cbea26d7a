-- The signing key set's version: bumped in the same transaction as every
-- key change, published in the JWKS, so a sidecar never installs a key set
-- older than one it has seen (from a replica that has not caught up).
CREATE TABLE key_set_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO key_set_version (id, version) VALUES (1, 1);

-- Bumped by every change to what a token says about the user (roles) or
-- whether the user may hold one (disable). Tokens carry the generation they
-- were minted at (`user_gen`); a user_generation revocation refuses every
-- token of an older generation, exactly, whatever the clock says.
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;

-- Retention deletes by age.
CREATE INDEX audit_log_at ON audit_log(at);
