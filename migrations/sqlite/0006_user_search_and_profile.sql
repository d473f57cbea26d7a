-- User search: one lower-cased text per user (email, name, linked logins),
-- kept by the store, indexed for substring search. SQLite: an FTS5 trigram
-- index (external content; rebuilt at start, since VACUUM may renumber the
-- rowids it keys on). PostgreSQL: a pg_trgm GIN index.
ALTER TABLE users ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
UPDATE users SET search_text = lower(email || ' ' || coalesce(name, '') || coalesce(
    (SELECT ' ' || group_concat(lower(login), ' ') FROM identities WHERE user_id = users.id), ''));
CREATE VIRTUAL TABLE users_search USING fts5(
    search_text, content='users', content_rowid='rowid', tokenize='trigram'
);
INSERT INTO users_search(users_search) VALUES ('rebuild');
CREATE TRIGGER users_search_insert AFTER INSERT ON users BEGIN
    INSERT INTO users_search(rowid, search_text) VALUES (new.rowid, new.search_text);
END;
CREATE TRIGGER users_search_delete AFTER DELETE ON users BEGIN
    INSERT INTO users_search(users_search, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
END;
CREATE TRIGGER users_search_update AFTER UPDATE OF search_text ON users BEGIN
    INSERT INTO users_search(users_search, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
    INSERT INTO users_search(rowid, search_text) VALUES (new.rowid, new.search_text);
END;

-- Profile: an avatar (filled from GitHub when linked), and metadata as JSON
-- objects: what the user may edit, and what only admins may set.
ALTER TABLE users ADD COLUMN avatar_url TEXT;
ALTER TABLE users ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN admin_metadata TEXT NOT NULL DEFAULT '{}';
