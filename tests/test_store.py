"""The SQLite file: migrations applied once, data surviving a restart, readable with sqlite3."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets.exceptions
from websockets.asyncio.client import connect as websockets_connect

from server import create_app
from server.config import Config
from server import db as db_module
from server.db import Database, MigrationError, migration_files

from helpers import (
    assert_error, browser_socket, connect, create_room, create_user, receive, receive_close, refused_status,
    send_and_receive,
)


async def test_a_fresh_database_is_migrated_to_the_last_file(tmp_path):
    path = tmp_path / "chat.db"
    db = await Database.open(path)
    await db.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migration_files()[-1][0]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "rooms", "memberships", "messages"} <= tables


@pytest.mark.parametrize("folder", [db_module.MIGRATIONS_DIR, db_module.MIGRATIONS_DIR / "postgresql"])
def test_each_migration_has_a_number_of_its_own(folder):
    numbers = [int(path.name[:4]) for path in folder.glob("*.sql")]
    assert sorted(numbers) == list(range(1, len(numbers) + 1))  # branches that each added one: renumber


def test_two_migrations_of_one_number_are_refused(tmp_path):
    for name in ("0001_a.sql", "0001_b.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="migrations 0001_a.sql and 0001_b.sql have the same number"):
        migration_files(tmp_path)


async def test_migrations_run_once_and_only_once(tmp_path, caplog):
    path = tmp_path / "chat.db"
    db = await Database.open(path)
    user, _ = await db.create_user("alice")
    await db.close()
    caplog.clear()
    db = await Database.open(path)  # a second start applies nothing and keeps the data
    assert await db.get_user(user["id"]) == user
    await db.close()
    assert "Applied migration" not in caplog.text


async def test_a_database_from_a_newer_server_is_refused(tmp_path):
    path = tmp_path / "chat.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 9999")
    with pytest.raises(MigrationError, match="schema version 9999, newer than this server's"):
        await Database.open(path)


async def test_everything_survives_an_app_restart(aiohttp_client, tmp_path):
    config = Config(db_path=tmp_path / "chat.db")
    client = await aiohttp_client(create_app(config))
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    first = await send_and_receive(ws, "before the restart")
    await ws.close()
    await client.close()

    client = await aiohttp_client(create_app(config))
    assert (await (await client.get(f"/users/{user['id']}")).json())["username"] == "alice"
    assert (await (await client.get(f"/rooms/{room['id']}")).json())["users"] == [user["id"]]
    assert await (await client.get(f"/rooms/{room['id']}/messages")).json() == [
        {key: value for key, value in first.items() if key != "type"}]
    ws = await connect(client, room["id"], user["id"])
    assert (await send_and_receive(ws, "after the restart"))["seq"] == 2  # numbering goes on
    await ws.close()


async def test_tokens_are_stored_hashed(client, tmp_path):
    user = await create_user(client)
    with sqlite3.connect(tmp_path / "chat.db") as conn:
        stored = conn.execute("SELECT token_hash FROM users WHERE id = ?", (user["id"],)).fetchone()[0]
        dump = "\n".join(conn.iterdump())
    assert stored != user["token"] and len(stored) == 64
    assert user["token"] not in dump


async def test_after_a_pause_in_writing_the_database_file_itself_holds_the_messages(client, tmp_path, monkeypatch):
    """Checkpoints come in pauses of writing: then a copy of chat.db alone, without its -wal, is up to date."""
    monkeypatch.setattr(db_module, "CHECKPOINT_WHEN_QUIET_SECONDS", 0.2)
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    for n in range(3):
        await send_and_receive(ws, f"m{n}")
    copy = tmp_path / "copy.db"
    deadline = time.monotonic() + 5
    while True:
        shutil.copyfile(tmp_path / "chat.db", copy)
        with contextlib.closing(sqlite3.connect(copy)) as conn:
            try:
                stored = [row[0] for row in conn.execute("SELECT content FROM messages ORDER BY seq")]
            except sqlite3.OperationalError:  # not even the tables are in the file yet
                stored = []
        if stored or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert stored == ["m0", "m1", "m2"]


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def test_the_wal_is_cut_back_while_writes_go_on_and_emptied_in_a_pause(make_client, tmp_path, monkeypatch):
    """A flood of messages: the -wal file is started over and cut back now and then while it goes
    on (it used to grow with every commit until the server stopped), and is empty after a pause."""
    monkeypatch.setattr(db_module, "CHECKPOINT_WHEN_QUIET_SECONDS", 0.3)
    monkeypatch.setattr(db_module, "CHECKPOINT_AT_LEAST_SECONDS", 1.0)
    monkeypatch.setattr(db_module, "WAL_SIZE_LIMIT_BYTES", 256 * 1024, raising=False)
    client = await make_client(rate_limit_per_second=0)
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    wal = tmp_path / "chat.db-wal"
    sizes = []
    flood_ends = time.monotonic() + 4
    while time.monotonic() < flood_ends:
        for n in range(20):
            await ws.send_json({"content": f"{n} " + "x" * 1000})
        for _ in range(20):
            await receive(ws)
        sizes.append(file_size(wal))
    assert any(later < earlier for earlier, later in zip(sizes, sizes[1:])), f"the WAL only grew, to {sizes[-1]} bytes"
    await asyncio.sleep(1.5)
    assert file_size(wal) < 64 * 1024 < max(sizes), (file_size(wal), max(sizes))
    history = await (await client.get(f"/rooms/{room['id']}/messages", params={"limit": "1"})).json()
    assert history[0]["seq"] == 20 * len(sizes)  # nothing was lost on the way


@contextlib.contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection with a write transaction open, as someone in the sqlite3 shell may leave one."""
    shell = sqlite3.connect(path, isolation_level=None)
    shell.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        shell.execute("ROLLBACK")
        shell.close()


@pytest.fixture
def short_lock_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes give up on a held lock after 0.3 s instead of 5 s."""
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_SECONDS", 0.3)


async def test_a_write_lock_held_elsewhere_delays_messages_but_stalls_nothing(client, tmp_path):
    """Someone in the sqlite3 shell has a write transaction open: the server keeps serving, and the
    message waits for the lock instead of being lost or blocking the event loop."""
    user = await create_user(client)
    room = await create_room(client)
    sender = await connect(client, room["id"], user["id"])
    listener = await connect(client, room["id"], user["id"])
    await receive(sender)  # the listener's user_joined
    with write_lock_held(tmp_path / "chat.db"):
        await sender.send_json({"content": "held up"})
        started = time.monotonic()
        resp = await client.get(f"/rooms/{room['id']}")  # answered while the message waits
        assert resp.status == 200
        assert time.monotonic() - started < 0.5
        with pytest.raises(asyncio.TimeoutError):
            await listener.receive(timeout=0.3)
    message = await receive(listener)
    assert (message["content"], message["seq"]) == ("held up", 1)
    assert [m["content"] for m in await (await client.get(f"/rooms/{room['id']}/messages")).json()] == ["held up"]


async def test_a_write_lock_held_too_long_fails_the_message_plainly(client, tmp_path, short_lock_wait):
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    with write_lock_held(tmp_path / "chat.db"):
        await ws.send_json({"content": "never stored"})
        assert await receive(ws) == {"type": "error",
                                     "message": "The message could not be stored; please send it again"}
    assert (await send_and_receive(ws, "sent again"))["seq"] == 1  # no gap where the failed one was
    history = await (await client.get(f"/rooms/{room['id']}/messages")).json()
    assert [m["content"] for m in history] == ["sent again"]


async def test_http_writes_answer_503_when_the_lock_is_held_too_long(client, tmp_path, short_lock_wait):
    user = await create_user(client)
    room = await create_room(client)
    with write_lock_held(tmp_path / "chat.db"):
        answers = await asyncio.gather(
            client.post("/users", json={"username": "bob"}),
            client.post("/rooms", json={"name": "kitchen"}),
            client.post(f"/rooms/{room['id']}/join", json={"user_id": user["id"]}))
        for resp in answers:
            await assert_error(resp, 503, "The database is locked by another program; try again")
    assert [u["username"] for u in await (await client.get("/users")).json()] == ["alice"]
    assert [r["name"] for r in await (await client.get("/rooms")).json()] == ["lobby"]
    assert (await client.post(f"/rooms/{room['id']}/join", json={"user_id": user["id"]})).status == 200


async def test_writes_held_up_by_a_lock_each_give_up_on_their_own_deadline(client, tmp_path):
    """Writes of alternating kinds queue up behind a lock held in another program: each one is
    answered 503 BUSY_TIMEOUT_SECONDS after it was sent, not one wait after another (5, 10, 15 s...)."""
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    writes = [lambda: client.post("/users", json={"username": "bob"}),
              lambda: client.post("/rooms", json={"name": "kitchen"}),
              lambda: client.post(f"/rooms/{room['id']}/join", json={"user_id": user["id"]})] * 2

    async def timed(write: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
        started = time.monotonic()
        return await write(), time.monotonic() - started

    with write_lock_held(tmp_path / "chat.db"):
        sent: list[asyncio.Task[tuple[Any, float]]] = []
        for write in writes:
            sent.append(asyncio.create_task(timed(write)))
            await asyncio.sleep(0.2)
        message_sent = time.monotonic()
        await ws.send_json({"content": "held up"})
        error = await receive(ws, timeout=3 * db_module.BUSY_TIMEOUT_SECONDS)
        message_waited = time.monotonic() - message_sent
        answers = await asyncio.gather(*sent)
    assert error == {"type": "error", "message": "The message could not be stored; please send it again"}
    waits = [message_waited]
    for resp, waited in answers:
        await assert_error(resp, 503, "The database is locked by another program; try again")
        waits.append(waited)
    for waited in waits:
        assert db_module.BUSY_TIMEOUT_SECONDS - 0.1 <= waited < db_module.BUSY_TIMEOUT_SECONDS + 2, waits
    assert [u["username"] for u in await (await client.get("/users")).json()] == ["alice"]


async def test_a_socket_is_refused_1013_when_the_lock_is_held_too_long(client, tmp_path, short_lock_wait):
    user = await create_user(client)
    room = await create_room(client)
    with write_lock_held(tmp_path / "chat.db"):
        ws = await browser_socket(client, f"/ws/{room['id']}/{user['id']}")
        assert await receive_close(ws) == (1013, "Database busy, try again")
        assert await refused_status(client, f"/ws/{room['id']}/{user['id']}") == 503  # a script, over HTTP
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await websockets_connect(f"ws://{client.host}:{client.port}/ws/{room['id']}/{user['id']}")
        assert (refused.value.response.status_code, json.loads(refused.value.response.body)) == (
            503, {"detail": "Database busy, try again", "close_code": 1013})
    await connect(client, room["id"], user["id"])  # and in once the lock is gone
