"""What one client can make the server hold in memory: measured as the RSS of a real run.py."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import urllib.request
import uuid
from pathlib import Path

from bench.procstat import rss_bytes, steady_rss
from helpers import TIMEOUT
from raw_ws import CLOSE, PING, PONG, TEXT, RawSocket, client_frame, close_code, server_frames
from server.db import migrate

MiB = 1024 * 1024


def fill_database(path: Path, rooms: int, messages_per_room: int, content: str) -> tuple[str, list[str]]:
    """Rooms full of messages, written straight into the file before the server starts; the author's and rooms' ids."""
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
    return user_id, room_ids


def test_the_history_cache_stays_within_its_bytes(start_server, tmp_path):
    # 100 rooms of 100 messages of 4,000 control characters: 24 KB each once JSON-escaped, 240 MB in all.
    server = start_server(HISTORY_CACHE_BYTES=str(16 * MiB))
    server.stop()
    _, room_ids = fill_database(server.db_path, rooms=100, messages_per_room=100, content="\x01" * 4000)
    server.start()
    urllib.request.urlopen(f"{server.url}/rooms/{room_ids[0]}/messages?limit=1", timeout=10).read()
    before = rss_bytes(server.process.pid)
    for room_id in room_ids:
        with urllib.request.urlopen(f"{server.url}/rooms/{room_id}/messages?limit=1", timeout=10) as response:
            assert len(response.read()) > 24_000
    growth = rss_bytes(server.process.pid) - before
    # The cache's own bound plus room for the allocator's slack; without a bound in bytes: +200 MiB.
    assert growth < 16 * MiB + 16 * MiB, f"RSS grew by {growth / MiB:.0f} MiB"


def start_with_a_long_room(start_server, messages: int, **env: str):
    """A server whose one room holds `messages` messages; the server, the author's id and the room's id."""
    server = start_server(**env)
    server.stop()
    user_id, (room_id,) = fill_database(server.db_path, rooms=1, messages_per_room=messages, content="x" * 100)
    server.start()
    return server, user_id, room_id


async def test_a_slow_but_steady_reader_of_a_long_replay_is_not_dropped_by_the_heartbeat(start_server):
    # About 25 MB of history, read through a small window at a few MB/s: several heartbeats pass. The
    # kernel takes what the server writes in bursts of a megabyte or so, and wakes the replay only as
    # its buffers empty: a heartbeat shorter than a burst takes to read would drop anyone, so 2 s.
    server, user_id, room_id = start_with_a_long_room(start_server, 100_000, HEARTBEAT_SECONDS="2")
    ws = await RawSocket.connect("127.0.0.1", server.port, f"/ws/{room_id}/{user_id}?since=0",
                                 receive_buffer=64 * 1024)
    try:
        started, seqs = time.monotonic(), []
        await read_messages(ws, seqs, until_seq=90_000, pause=0.005)
        assert time.monotonic() - started > 2 * 2  # it was slow: more than two heartbeats passed
        # The rest at full speed: the ping after the replay waits behind what the kernel holds (megabytes).
        await read_messages(ws, seqs, until_seq=100_000, pause=0)
        assert seqs == list(range(1, 100_001))
        await ws.send(client_frame(TEXT, b'{"content": "caught up"}'))
        await read_messages(ws, seqs, until_seq=100_001, pause=0)
    finally:
        ws.close()


async def test_replays_that_nobody_reads_hold_one_socket_buffer_each(start_server):
    # 200 sockets ask for the whole history of a room of 2,000 messages of 4,000 control characters
    # (24 KB each once JSON-escaped) and never read. Each may hold a socket buffer (64 KiB) and one
    # frame, 17 MiB in all; holding a page of 200 messages each as well took 250 MiB.
    server = start_server(MAX_CONNECTIONS_PER_USER="200")
    server.stop()
    user_id, (room_id,) = fill_database(server.db_path, rooms=1, messages_per_room=2000, content="\x01" * 4000)
    server.start()
    before = rss_bytes(server.process.pid)
    sockets = [await RawSocket.connect("127.0.0.1", server.port, f"/ws/{room_id}/{user_id}?since=0")
               for _ in range(200)]
    try:
        growth = await steady_rss(server.process.pid, timeout_s=30) - before
        assert growth < 48 * MiB, f"RSS grew by {growth / MiB:.0f} MiB"
        # A stalled replay let its page go, not its place: once read, it is whole and in order.
        seqs: list[int] = []
        await read_messages(sockets[0], seqs, until_seq=2000, pause=0)
        assert seqs == list(range(1, 2001))
    finally:
        for ws in sockets:
            ws.close()


async def read_messages(ws: RawSocket, seqs: list[int], until_seq: int, pause: float) -> None:
    """Add the seqs of message frames to `seqs` up to `until_seq`, pausing after each chunk read,
    and answer pings as a browser does."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 60  # pings keep coming even if the replay stopped
    while not seqs or seqs[-1] < until_seq:
        assert time.monotonic() < deadline, f"stuck after seq {seqs[-1] if seqs else None}"
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(ws.sock, 32 * 1024), TIMEOUT)
        except ConnectionResetError:
            chunk = b""
        assert chunk, f"dropped after {len(seqs)} messages"
        frames, ws.unread = server_frames(ws.unread + chunk)
        for opcode, payload in frames:
            assert opcode != CLOSE, f"closed {close_code(payload)} after {len(seqs)} messages"
            if opcode == PING:
                await ws.send(client_frame(PONG, payload))
            elif b'"type":"message"' in payload:
                seqs.append(int(payload.split(b'"seq":')[1].split(b",")[0]))
        await asyncio.sleep(pause)
