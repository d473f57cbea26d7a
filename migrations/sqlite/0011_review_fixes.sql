-- The factor that opened a session (a passkey's credential id), so that
-- removing the factor ends the sessions it opened.
ALTER TABLE sessions ADD COLUMN opened_by TEXT;

-- Who started a passkey ceremony (a client network, or a user), so pending
-- ceremonies are capped per client as well as in all.
ALTER TABLE webauthn_ceremonies ADD COLUMN client TEXT;
-- Start order within a client (seconds × 10^6 + a counter): its oldest goes
-- first when it holds too many.
ALTER TABLE webauthn_ceremonies ADD COLUMN started BIGINT;
CREATE INDEX webauthn_ceremonies_client ON webauthn_ceremonies(client, expires_at);

-- A team owner's invitation, waiting for the invited user to accept:
-- owners add people only with their consent.
CREATE TABLE team_invitations (
    team_slug TEXT NOT NULL REFERENCES teams(slug) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (team_slug, user_id)
);
CREATE INDEX team_invitations_user ON team_invitations(user_id);
