-- The PostgreSQL schema: the same tables as the SQLite files beside this
-- folder, plus what several processes need to share rooms.
-- Ids are the text ids clients use in URLs; times are ISO 8601 UTC text, as
-- the API writes them. `position` keeps creation order for listing.

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    username   TEXT NOT NULL CHECK (length(username) >= 2),
    token_hash TEXT NOT NULL,  -- sha256 hex of the user's token; the token itself is never stored
    joined_at  TEXT NOT NULL,
    position   BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);

CREATE TABLE rooms (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL CHECK (length(name) >= 1),
    created_at TEXT NOT NULL,
    -- The seq of the room's last message. A message takes the next one by updating
    -- this row in the statement that stores it: writers to one room, on any process,
    -- queue on the row's lock, so seqs commit in order and without gaps.
    last_seq   BIGINT NOT NULL DEFAULT 0,
    position   BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);

CREATE TABLE memberships (
    room_id   TEXT NOT NULL REFERENCES rooms (id),
    user_id   TEXT NOT NULL REFERENCES users (id),
    joined_at TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- The log every process reads new messages from, by room and seq.
CREATE TABLE messages (
    room_id   TEXT NOT NULL REFERENCES rooms (id),
    seq       BIGINT NOT NULL CHECK (seq >= 1),
    id        TEXT NOT NULL,
    user_id   TEXT NOT NULL REFERENCES users (id),
    content   TEXT NOT NULL CHECK (length(content) >= 1),
    timestamp TEXT NOT NULL,
    PRIMARY KEY (room_id, seq)
);

-- Server processes, and the sockets each holds per room and user (for presence
-- and /health). A process that stops writing last_seen is left out of both.
CREATE UNLOGGED TABLE processes (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNLOGGED TABLE presence (
    process_id  TEXT NOT NULL REFERENCES processes (id) ON DELETE CASCADE,
    room_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    username    TEXT NOT NULL,
    connections INTEGER NOT NULL CHECK (connections > 0),
    PRIMARY KEY (process_id, room_id, user_id)
);
CREATE INDEX presence_by_room ON presence (room_id);
