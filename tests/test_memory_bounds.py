"""What one client can make the server hold in memory: measured as the RSS of a real run.py."""

from __future__ import annotations

import sqlite3
import urllib.request
import uuid
from pathlib import Path

from server.db import migrate

MiB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fill_database(path: Path, rooms: int, messages_per_room: int, content: str) -> list[str]:
    """Rooms full of messages, written straight into the file before the server starts; their ids."""
    conn = sqlite3.connect(path)
    migrate(conn)
    user_id, room_ids = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(rooms)]
    now = "2026-01-01T00:00:00.000Z"
    with conn:
        conn.execute("INSERT INTO users VALUES (?, 'mallory', 'x', ?)", (user_id, now))
        conn.executemany("INSERT INTO rooms VALUES (?, 'big', ?)", [(room, now) for room in room_ids])
        conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                         [(room, seq, str(uuid.uuid4()), user_id, content, now)
                          for room in room_ids for seq in range(1, messages_per_room + 1)])
    conn.close()
    return room_ids


def test_the_history_cache_stays_within_its_bytes(start_server, tmp_path):
    # 100 rooms of 100 messages of 4,000 control characters: 24 KB each once JSON-escaped, 240 MB in all.
    server = start_server(HISTORY_CACHE_BYTES=str(16 * MiB))
    server.stop()
    room_ids = fill_database(server.db_path, rooms=100, messages_per_room=100, content="\x01" * 4000)
    server.start()
    urllib.request.urlopen(f"{server.url}/rooms/{room_ids[0]}/messages?limit=1", timeout=10).read()
    before = rss_bytes(server.process.pid)
    for room_id in room_ids:
        with urllib.request.urlopen(f"{server.url}/rooms/{room_id}/messages?limit=1", timeout=10) as response:
            assert len(response.read()) > 24_000
    growth = rss_bytes(server.process.pid) - before
    # The cache's own bound plus room for the allocator's slack; without a bound in bytes: +200 MiB.
    assert growth < 16 * MiB + 16 * MiB, f"RSS grew by {growth / MiB:.0f} MiB"
