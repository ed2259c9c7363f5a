"""`python run.py` as an operator meets it: bad settings, --help, SIGTERM, and kill -9 in the middle of a chat."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import pytest
from aiohttp import WSMsgType

from helpers import TIMEOUT
from raw_ws import RawSocket
from server_process import REPO_ROOT, free_port

SENDERS = 4
WINDOW = 8  # messages a sender may have in flight before it waits for its own echo
KILL_AFTER = 600  # acknowledged messages, all senders together


def run_py(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("variable, value, accepted", [
    ("PORT", "abc", "a whole number"),
    ("ALLOW_JOIN_AUTO_ROOMS", "maybe", "true or false"),
    ("MAX_FRAME_BYTES", "-5", "a whole number"),
    ("ENVIRONMENT", "prod", "development, production"),
])
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(tmp_path, variable, value, accepted):
    port = str(free_port())
    result = run_py("--db", str(tmp_path / "chat.db"), **{"PORT": port, variable: value})
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, lines
    assert f"{variable}={value}" in lines[0] and accepted in lines[0]
    assert not (tmp_path / "chat.db").exists()  # it stopped before touching anything


def test_production_without_a_decision_about_tokens_does_not_start(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "REQUIRE_TOKENS"}
    result = subprocess.run([sys.executable, "run.py", "--db", str(tmp_path / "chat.db")], cwd=REPO_ROOT,
                            env={**env, "ENVIRONMENT": "production", "PORT": str(free_port())},
                            capture_output=True, text=True, timeout=20)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2  # the unit's RestartPreventExitStatus: retrying cannot fix it
    assert len(lines) == 1, lines
    assert "REQUIRE_TOKENS" in lines[0] and "true (recommended" in lines[0] and "false (only for old clients" in lines[0]
    assert not (tmp_path / "chat.db").exists()


def test_a_database_that_cannot_be_opened_is_named_in_one_error_line(tmp_path):
    missing = tmp_path / "no such folder" / "chat.db"
    result = run_py("--db", str(missing), PORT=str(free_port()))
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "Traceback" in line]
    assert result.returncode == 1
    assert len(errors) == 1 and f"cannot use the database {missing}" in errors[0], result.stderr


def test_help_lists_the_flags_and_starts_nothing(tmp_path):
    result = run_py("--help", DATABASE_PATH=str(tmp_path / "chat.db"))
    assert result.returncode == 0, result.stderr
    for flag in ("--host", "--port", "--db"):
        assert flag in result.stdout
    assert not (tmp_path / "chat.db").exists()


async def post(session: aiohttp.ClientSession, path: str, body: dict[str, str]) -> dict[str, str]:
    async with session.post(path, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def history(session: aiohttp.ClientSession, room_id: str) -> list[dict[str, object]]:
    """The whole history of a room, fetched page by page."""
    messages: list[dict[str, object]] = []
    while True:
        params = {"after": str(messages[-1]["seq"] if messages else 0), "limit": "1000"}
        async with session.get(f"/rooms/{room_id}/messages", params=params) as resp:
            assert resp.status == 200
            page = await resp.json()
        messages += page
        if len(page) < 1000:
            return messages


async def test_sigterm_closes_every_socket_with_1001_and_exits_cleanly(start_server):
    server = start_server(RATE_LIMIT_PER_SECOND="0")
    async with aiohttp.ClientSession(server.url) as session:
        rooms = [await post(session, "/rooms", {"name": name}) for name in ("one", "two")]
        users = [await post(session, "/users", {"username": f"user{n}"}) for n in range(4)]
        sockets = []
        for n, user in enumerate(users):
            ws = await session.ws_connect(f"/ws/{rooms[n % 2]['id']}/{user['id']}")
            sockets.append(ws)
        # And one that does not read at all: it must not hold the shutdown up.
        stuck = await RawSocket.connect("127.0.0.1", server.port, f"/ws/{rooms[0]['id']}/{users[0]['id']}",
                                        receive_buffer=4096)
        last = sockets[-1]
        await last.send_json({"content": "last words"})
        while (frame := await last.receive_json(timeout=TIMEOUT))["type"] != "message":
            pass
        assert frame["content"] == "last words"

        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        closes = []
        for ws in sockets:
            while (msg := await ws.receive(timeout=TIMEOUT)).type is WSMsgType.TEXT:
                pass  # joins and messages still in flight
            closes.append((msg.type, msg.data, msg.extra))
        code = await asyncio.to_thread(server.process.wait, 10)
        stopped_in = time.monotonic() - started
        stuck.close()
        assert closes == [(WSMsgType.CLOSE, 1001, "Server shutting down")] * len(sockets)
        assert code == 0
        assert stopped_in < 6.0, stopped_in
        assert "Stopped" in server.log_text()
        server.process = None

        server.start()  # the acknowledged message survived the stop
        assert [m["content"] for m in await history(session, rooms[1]["id"])] == ["last words"]


async def test_kill_9_loses_no_message_a_sender_saw_acknowledged(start_server):
    server = start_server(RATE_LIMIT_PER_SECOND="0")
    async with aiohttp.ClientSession(server.url) as session:
        room = await post(session, "/rooms", {"name": "crash"})
        users = [await post(session, "/users", {"username": f"sender{n}"}) for n in range(SENDERS)]
    acked: dict[str, list[int]] = {user["id"]: [] for user in users}
    killed = asyncio.Event()

    async def chat(user: dict[str, str]) -> None:
        """Send numbered messages until the server dies, noting each of one's own that comes back."""
        mine = acked[user["id"]]
        async with aiohttp.ClientSession(server.url) as session:
            async with session.ws_connect(f"/ws/{room['id']}/{user['id']}") as ws:
                sent = 0
                try:
                    while sent < 5000:
                        while sent - len(mine) < WINDOW:
                            await ws.send_json({"content": f"{user['username']} {sent}"})
                            sent += 1
                        msg = await ws.receive(timeout=TIMEOUT)
                        if msg.type is not WSMsgType.TEXT:
                            return  # the server is gone
                        frame = msg.json()
                        if frame["type"] == "message" and frame["user_id"] == user["id"]:
                            mine.append(int(frame["content"].split()[1]))
                            if sum(map(len, acked.values())) == KILL_AFTER:
                                # The very moment an acknowledgement arrives, with others' messages in flight.
                                os.kill(server.process.pid, signal.SIGKILL)
                                killed.set()
                except (aiohttp.ClientError, ConnectionError):
                    return

    senders = [asyncio.create_task(chat(user)) for user in users]
    await asyncio.wait_for(killed.wait(), 30)
    await asyncio.wait_for(asyncio.gather(*senders), 30)
    server.kill()  # collects the dead process

    server.start()
    async with aiohttp.ClientSession(server.url) as session:
        stored = await history(session, room["id"])
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
    total_acked = 0
    for user in users:
        numbers = [int(m["content"].split()[1]) for m in stored if m["user_id"] == user["id"]]
        mine = acked[user["id"]]
        assert mine == list(range(len(mine))), "each sender saw its own messages come back in order"
        # Stored: everything acknowledged, then perhaps a few that were committed but not yet echoed.
        assert numbers == list(range(len(numbers))), "once each, in the order sent"
        assert len(numbers) >= len(mine), f"{user['username']} lost {len(mine) - len(numbers)} acknowledged"
        total_acked += len(mine)
    print(f"\nkill -9 after {total_acked} acknowledged messages from {SENDERS} senders; "
          f"{len(stored)} stored, {len(stored) - total_acked} of them committed but not yet echoed")


def test_a_malformed_request_is_answered_400_and_logged_in_one_line(start_server):
    server = start_server()
    for raw in (b"GET / HTTP/1.1\r\nHost: x\r\nX-Probe: \x00\r\n\r\n",
                b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            conn.sendall(raw)
            assert conn.recv(4096).startswith(b"HTTP/1.0 400 Bad Request")
    assert server.stop() == 0
    lines = [line for line in server.log_text().splitlines() if "Malformed request" in line]
    assert len(lines) == 2 and all(" WARNING aiohttp.server: Malformed request from 127.0.0.1: " in line
                                   for line in lines), lines
    assert "Traceback" not in server.log_text()
