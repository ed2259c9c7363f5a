-- Chat messages, stored in room order: (room_id, seq) is the key, so a page of
-- history is one range read however large the room grows. `id` is a uuid4 the
-- server makes; no route looks a message up by it, so it has no index of its
-- own (each index is one more page written at every commit).

CREATE TABLE messages (
    room_id   TEXT NOT NULL REFERENCES rooms (id),
    seq       INTEGER NOT NULL CHECK (seq >= 1),  -- the message's place in its room: 1, 2, 3, ...
    id        TEXT NOT NULL,
    user_id   TEXT NOT NULL REFERENCES users (id),
    content   TEXT NOT NULL CHECK (length(content) >= 1),
    timestamp TEXT NOT NULL,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
