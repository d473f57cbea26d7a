-- Per-client grant types and token lifetimes. grant_types is a JSON list;
-- the lifetimes (seconds) only shorten the issuer's (NULL: the issuer's).
-- A session keeps the access-token lifetime its client had when it began.
ALTER TABLE oauth_clients ADD COLUMN grant_types TEXT NOT NULL DEFAULT '["authorization_code","refresh_token"]';
ALTER TABLE oauth_clients ADD COLUMN access_token_ttl BIGINT;
ALTER TABLE oauth_clients ADD COLUMN refresh_token_ttl BIGINT;
ALTER TABLE sessions ADD COLUMN access_ttl BIGINT;
