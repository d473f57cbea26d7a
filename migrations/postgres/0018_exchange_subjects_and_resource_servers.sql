-- Token exchange (RFC 8693): the clients whose users' tokens a service may
-- trade (none: it may trade none). Introspection (RFC 7662 §4): the
-- resources a client serves, whose tokens it may introspect.
ALTER TABLE oauth_clients ADD COLUMN subject_clients TEXT NOT NULL DEFAULT '[]';
ALTER TABLE oauth_clients ADD COLUMN serves TEXT NOT NULL DEFAULT '[]';
