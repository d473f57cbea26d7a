-- Failed sign-ins per account name (the normalised email as typed, so an
-- unknown account behaves like a known one): after a few, each attempt
-- must wait a growing, capped delay. Shared by every replica.
CREATE TABLE login_failures (
    email TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    delayed_until_ms BIGINT NOT NULL
);
CREATE INDEX login_failures_last ON login_failures(last_failure_at);
