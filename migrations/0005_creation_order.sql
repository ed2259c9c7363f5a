-- GET /users and GET /rooms list in creation order, a page at a time: each page
-- starts where the last ended, found through these indexes rather than a scan
-- and sort of the whole table (rowid, the tie-breaker, is part of every index).
-- IF NOT EXISTS: a database made while this file was numbered 0003 has them already.

CREATE INDEX IF NOT EXISTS users_by_creation ON users (joined_at);
CREATE INDEX IF NOT EXISTS rooms_by_creation ON rooms (created_at);
