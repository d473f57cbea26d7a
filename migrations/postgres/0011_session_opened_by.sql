-- The factor that opened a session (a passkey's credential id), so that
-- removing the factor ends the sessions it opened.
ALTER TABLE sessions ADD COLUMN opened_by TEXT;
