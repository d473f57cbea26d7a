-- Teams and memberships. A member's role inside a team is owner,
-- maintainer or member (each includes the ones after it).
CREATE TABLE teams (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE team_members (
    team_slug TEXT NOT NULL REFERENCES teams(slug) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (team_slug, user_id)
);
CREATE INDEX team_members_user ON team_members(user_id);

-- Global roles and what they grant. Users are bound to roles by
-- users.roles; permissions are never put in tokens: sidecars expand roles
-- with this map, published to them at every change (versioned).
CREATE TABLE roles (
    name TEXT PRIMARY KEY,
    description TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE role_permissions (
    role TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (role, permission)
);
CREATE TABLE permissions_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO permissions_version (id, version) VALUES (1, 1);
