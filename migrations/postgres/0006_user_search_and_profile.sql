-- User search: one lower-cased text per user (email, name, linked logins),
-- kept by the store, indexed for substring search with pg_trgm (a trusted
-- extension since PostgreSQL 13: the database owner may create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
ALTER TABLE users ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
UPDATE users SET search_text = lower(email || ' ' || coalesce(name, '') || coalesce(
    (SELECT ' ' || string_agg(lower(login), ' ') FROM identities WHERE user_id = users.id), ''));
CREATE INDEX users_search_trgm ON users USING gin (search_text gin_trgm_ops);

-- Profile: an avatar (filled from GitHub when linked), and metadata as JSON
-- objects: what the user may edit, and what only admins may set.
ALTER TABLE users ADD COLUMN avatar_url TEXT;
ALTER TABLE users ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN admin_metadata TEXT NOT NULL DEFAULT '{}';
