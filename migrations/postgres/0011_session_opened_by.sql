-- The factor that opened a session (a passkey's credential id), so that
-- removing the factor ends the sessions it opened.
ALTER TABLE sessions ADD COLUMN opened_by TEXT;

-- Who started a passkey ceremony (a client network, or a user), so pending
-- ceremonies are capped per client as well as in all.
ALTER TABLE webauthn_ceremonies ADD COLUMN client TEXT;
CREATE INDEX webauthn_ceremonies_client ON webauthn_ceremonies(client, expires_at);
