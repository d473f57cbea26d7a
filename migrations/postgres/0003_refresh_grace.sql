-- Refresh grace window: a rotated token remembers its successor, so a
-- concurrent or retried refresh within the window gets the same successor
-- instead of tripping reuse detection. The successor token itself is kept
-- only sealed with the KEK, and only for the newest rotation of a session.
ALTER TABLE refresh_tokens ADD COLUMN rotated_at_ms BIGINT;
ALTER TABLE refresh_tokens ADD COLUMN successor_hash TEXT;
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed BYTEA;
