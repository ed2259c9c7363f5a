-- Reading a room's history or presence with REQUIRE_TOKENS on finds the
-- reader by the hash of the token it presents (member_with_token).
CREATE INDEX users_by_token_hash ON users (token_hash);
