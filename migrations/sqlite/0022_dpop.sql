-- The DPoP key (RFC 9449, its JWK thumbprint) an OAuth client's session is
-- bound to: its access tokens carry it (cnf.jkt) and its refresh token
-- is taken only with a proof signed by it.
ALTER TABLE sessions ADD COLUMN dpop_jkt TEXT;
