-- A client's version, raised by every change: an update may name the
-- version it was made from, and is refused if another change came first.
ALTER TABLE oauth_clients ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
