"""Running on PostgreSQL: start-up, migrations by several processes at once, a database that goes
away and comes back, --workers; and why one SQLite file serves one process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest

import server.postgres
from server.db import StoreUnavailable, migration_files
from server.postgres import POSTGRES_MIGRATIONS, PostgresStore

from helpers import connect, create_room, create_user, metrics_once_stored, receive, receive_close, send_and_receive
from server_process import REPO_ROOT, ServerProcess, free_port


def run_py(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=30)


def test_a_database_that_cannot_be_reached_stops_start_up_with_one_line(postgres):
    url = f"postgresql://chat:secret@127.0.0.1:{free_port()}/chat"
    result = run_py("--port", str(free_port()), DATABASE_URL=url)
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "Traceback" in line]
    assert result.returncode == 1
    assert len(errors) == 1, result.stderr
    assert "cannot reach the database postgresql://chat:***@127.0.0.1" in errors[0]
    assert "secret" not in result.stderr


def test_processes_starting_together_migrate_once(postgres, tmp_path):
    url = postgres.new_database()
    servers = [ServerProcess(tmp_path / "unused.db", tmp_path / f"server{n}.log", {"DATABASE_URL": url})
               for n in range(3)]
    try:
        for server in servers:  # all three race for the migration lock
            with open(server.log_path, "ab") as log:
                server.process = subprocess.Popen(
                    [sys.executable, "run.py", "--port", str(server.port)], cwd=REPO_ROOT,
                    env={**os.environ, "DATABASE_URL": url}, stdout=log, stderr=subprocess.STDOUT)
        for server in servers:
            server.wait_until_healthy()
        files = len(migration_files(POSTGRES_MIGRATIONS))
        assert postgres.sql(url, "SELECT count(*) FROM schema_version") == str(files)
        assert sorted(server.log_text().count("Applied migration") for server in servers) == [0, 0, files]
    finally:
        for server in servers:
            server.kill()


async def test_a_database_that_goes_away_answers_try_again_and_recovers_by_itself(make_client, postgres):
    client = await make_client(database_url=postgres.new_database())
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    await send_and_receive(ws, "before")
    await asyncio.to_thread(postgres.stop, "immediate")
    try:
        resp = await client.post("/users", json={"username": "bob"})
        assert resp.status == 503
        assert (await resp.json())["detail"] == "The database cannot be reached right now; try again"
        assert (await client.get("/health")).status == 503
        await ws.send_json({"content": "while it is gone"})
        assert (await receive(ws))["type"] == "error"
        late = await client.ws_connect(f"/ws/{room['id']}/{user['id']}", headers={"Origin": str(client.make_url(""))})
        assert (await receive_close(late))[0] == 1013
    finally:
        await asyncio.to_thread(postgres.start)
    for _ in range(50):  # the pool reconnects on its own
        if (await client.get("/health")).status == 200:
            break
        await asyncio.sleep(0.2)
    assert (await send_and_receive(ws, "after"))["seq"] == 2
    assert (await create_user(client, "carol"))["username"] == "carol"


async def test_a_database_that_stops_answering_answers_try_again_within_the_query_timeout(
        make_client, postgres, monkeypatch):
    # Its connections stay open and nothing comes back: without a timeout, writes would wait for ever.
    monkeypatch.setattr(server.postgres, "QUERY_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(server.postgres, "CONNECT_TIMEOUT_SECONDS", 1.0)
    client = await make_client(database_url=postgres.new_database())
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    await send_and_receive(ws, "before")
    await metrics_once_stored(client, 1)  # its writer has heard back too: no statement is under way
    with postgres.paused():
        started = time.monotonic()
        await ws.send_json({"content": "while it is stopped"})
        assert await receive(ws, timeout=4) == {
            "type": "error", "message": "The message could not be stored; please send it again"}
        resp = await client.post("/users", json={"username": "bob"})
        assert resp.status == 503
        assert (await resp.json())["detail"] == "The database cannot be reached right now; try again"
        assert time.monotonic() - started < 5
    # Once it answers again, the same socket works. The message that timed out may be committed after
    # all (its statement had reached the database), before or after the next one: then it is
    # delivered, once, in its place.
    for _ in range(50):
        if (await client.get("/health")).status == 200:
            break
        await asyncio.sleep(0.2)
    await ws.send_json({"content": "after"})
    received = []
    while "after" not in received:
        frame = await receive(ws)
        assert frame["type"] == "message" and frame["seq"] == len(received) + 2
        received.append(frame["content"])
    history = [m["content"] for m in await (await client.get(f"/rooms/{room['id']}/messages")).json()]
    assert history[:len(received) + 1] == ["before", *received]
    assert sorted(history[1:]) in (["after"], ["after", "while it is stopped"])


async def test_processes_behind_pgbouncer_in_transaction_mode_share_every_room(make_client, postgres, pgbouncer):
    # With notifications off (PgBouncer cannot carry LISTEN), two processes (two apps here) migrate the
    # database and share a room through the one-second poll, with statements that each of PgBouncer's
    # three server connections may run for any of the two pools' connections.
    url = pgbouncer.url(postgres.new_database())
    first, second = [await make_client(database_url=url, database_notifications=False) for _ in range(2)]
    ann, bob = await create_user(first, "ann"), await create_user(second, "bob")
    room = await create_room(first)
    sockets = [await connect(first, room["id"], ann["id"]), await connect(second, room["id"], bob["id"])]
    for number in range(15):
        for ws in sockets:
            await ws.send_json({"content": f"{number}"})

    async def read_meanwhile(client):
        for _ in range(15):
            assert (await client.get(f"/rooms/{room['id']}/messages")).status == 200
            assert (await client.get(f"/users/{ann['id']}")).status == 200

    await asyncio.gather(read_meanwhile(first), read_meanwhile(second))
    for ws in sockets:
        seqs = []
        while len(seqs) < 30:
            frame = await receive(ws)
            if frame["type"] == "message":
                seqs.append(frame["seq"])
        assert seqs == list(range(1, 31))
    history = await (await second.get(f"/rooms/{room['id']}/messages")).json()
    assert [m["seq"] for m in history] == list(range(1, 31))


async def test_a_room_followed_again_is_woken_by_its_notices_not_by_the_poll(postgres):
    # Two stores on one database, as two processes would have. The reader lets its room go and follows
    # it again (before and after it stopped listening to the room's channel): each time, a message the
    # writer stores reaches it in milliseconds, where the poll (once a second) would take up to a second.
    url = postgres.new_database()
    writer, reader = await PostgresStore.open(url), await PostgresStore.open(url)
    try:
        user, _ = await writer.create_user("ann")
        room_id = (await writer.create_room("talk"))["id"]
        received: asyncio.Queue[str] = asyncio.Queue()
        reader.on_messages_committed = lambda messages: [received.put_nowait(json.loads(m.item)["content"])
                                                         for m in messages]
        await reader.follow(room_id)
        await writer.add_message(room_id, user["id"], "ann", "warm-up")  # by now the listener is up
        assert await asyncio.wait_for(received.get(), 5) == "warm-up"
        delays = []
        for n in range(6):
            reader.unfollow(room_id)
            if n % 2:
                await asyncio.sleep(0.1)  # the channel is let go meanwhile; in even rounds, not yet
            await reader.follow(room_id)
            await asyncio.sleep(0.1)  # whatever the unfollow set off is done
            started = time.monotonic()
            await writer.add_message(room_id, user["id"], "ann", f"message {n}")
            assert await asyncio.wait_for(received.get(), 5) == f"message {n}"
            delays.append(time.monotonic() - started)
        assert max(delays) < 0.3, delays
    finally:
        await writer.close()
        await reader.close()


async def test_a_message_the_database_refuses_fails_as_not_stored_and_the_next_ones_are_stored(postgres):
    # The handlers let no NUL through (PostgreSQL's text cannot hold one); should a message get past
    # them, its writer hears "not stored", which sockets answer with an error frame, not a 1011.
    store = await PostgresStore.open(postgres.new_database())
    try:
        user, _ = await store.create_user("ann")
        room_id = (await store.create_room("talk"))["id"]
        with pytest.raises(StoreUnavailable, match="could not be stored"):
            await store.add_message(room_id, user["id"], "ann", "nul\x00")
        stored = await store.add_message(room_id, user["id"], "ann", "fine")
        assert stored["seq"] == 1
        assert [m["content"] for m in await store.messages(room_id, 10)] == ["fine"]
    finally:
        await store.close()


def test_workers_share_one_port_and_every_room(postgres, tmp_path):
    url = postgres.new_database()
    port = free_port()
    log = open(tmp_path / "workers.log", "wb")
    supervisor = subprocess.Popen([sys.executable, "run.py", "--port", str(port), "--workers", "3"],
                                  cwd=REPO_ROOT, env={**os.environ, "DATABASE_URL": url},
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        seen = set()
        deadline = time.monotonic() + 30
        while len(seen) < 3 and time.monotonic() < deadline:
            try:
                # A new connection each time: the kernel spreads them over the workers.
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    seen.add(__import__("json").load(response)["process"])
            except OSError:
                time.sleep(0.2)
        assert len(seen) == 3, (tmp_path / "workers.log").read_text()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 0
        log.close()
    assert postgres.sql(url, "SELECT count(*) FROM processes") == "0"  # each left cleanly


def test_workers_are_refused_on_sqlite(tmp_path):
    result = run_py("--db", str(tmp_path / "chat.db"), "--workers", "2", "--port", str(free_port()))
    assert result.returncode == 2
    assert "more than one needs PostgreSQL (DATABASE_URL): one SQLite file serves one process" in result.stderr
    assert not (tmp_path / "chat.db").exists()


def test_a_second_server_on_one_sqlite_file_is_refused_with_one_line(start_server, tmp_path):
    first = start_server()
    result = run_py("--db", str(first.db_path), "--port", str(free_port()))
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "Traceback" in line]
    assert result.returncode == 2  # as for a bad setting: systemd does not start it again and again
    assert len(errors) == 1 and f"another server process is using {first.db_path}" in errors[0], result.stderr
    assert first.get_json("/health")["status"] == "healthy"
