-- Users, rooms and who belongs to which room.
-- Ids are the text ids clients use in URLs (uuid4 by default, or the id a
-- client asked for when auto-creation is on). Times are ISO 8601 UTC text.

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    username   TEXT NOT NULL CHECK (length(username) >= 2),
    token_hash TEXT NOT NULL,  -- sha256 hex of the user's token; the token itself is never stored
    joined_at  TEXT NOT NULL
);

CREATE TABLE rooms (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL CHECK (length(name) >= 1),
    created_at TEXT NOT NULL
);

CREATE TABLE memberships (
    room_id   TEXT NOT NULL REFERENCES rooms (id),
    user_id   TEXT NOT NULL REFERENCES users (id),
    joined_at TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
