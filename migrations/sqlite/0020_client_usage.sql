-- How much each service uses its grants, per day (UTC), counted in memory
-- and added here in batches; and when it last did.
CREATE TABLE client_usage (
    client_id TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    uses BIGINT NOT NULL,
    PRIMARY KEY (client_id, day)
);
ALTER TABLE oauth_clients ADD COLUMN last_used_at BIGINT;
