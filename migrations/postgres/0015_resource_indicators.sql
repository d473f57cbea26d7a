-- Resource indicators (RFC 8707): the resources (audiences) a client may
-- ask tokens for, the one an authorization code and a session were
-- granted for (its access tokens' `aud`; NULL: the issuer's audience).
ALTER TABLE oauth_clients ADD COLUMN audiences TEXT NOT NULL DEFAULT '[]';
ALTER TABLE oauth_codes ADD COLUMN resource TEXT;
ALTER TABLE sessions ADD COLUMN resource TEXT;
