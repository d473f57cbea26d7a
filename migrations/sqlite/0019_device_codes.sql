-- The device authorization grant (RFC 8628): a device's request, waiting
-- for its user to approve it on another screen. Codes are kept hashed.
CREATE TABLE device_codes (
    device_code_hash TEXT PRIMARY KEY,
    user_code_hash TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    resource TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Seconds the device waits between polls; raised by each slow_down.
    poll_interval BIGINT NOT NULL,
    -- Milliseconds; the device's last poll (or the request itself).
    polled_at_ms BIGINT NOT NULL,
    -- pending, approved, denied or used.
    status TEXT NOT NULL DEFAULT 'pending',
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    amr TEXT,
    auth_time BIGINT,
    -- The browser session that approved: the device's session is opened
    -- only while it lives (signing out everywhere ends pending approvals).
    approved_by_session TEXT,
    -- Where the device asked from, shown to the user who answers.
    requested_ip TEXT
);
CREATE INDEX device_codes_expiry ON device_codes(expires_at);
