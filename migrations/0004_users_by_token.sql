-- Reading a room's history or presence with REQUIRE_TOKENS on finds the
-- reader by the hash of the token it presents (Database.member_with_token).
-- IF NOT EXISTS: for a while this file was numbered 0003 beside 0003_write_probe.sql, and a
-- database made then has the index already (see migrations of the same number in server/db.py).
CREATE INDEX IF NOT EXISTS users_by_token_hash ON users (token_hash);
