"""A refused socket, in the form its client can read (API.md, "WebSocket"):

- a script (no Origin: the `websockets` library, aiohttp's client, the old app's
  test scripts) gets an HTTP answer instead of the upgrade, with
  `{"detail": reason, "close_code": code}`;
- a browser (an Origin the server allows) gets the upgrade, then the close with
  the code and reason as its first frame.

Either way nothing is created and nobody in the room hears of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.exceptions import InvalidHandshake, InvalidStatus
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from helpers import TIMEOUT, browser_socket, connect, create_room, create_user, refused_status, send_and_receive


@dataclass
class Refusal:
    client: TestClient
    path: str
    status: int
    reason: str
    code: int
    watcher: Any  # a socket in the room the refused one asked for (or some room)


async def a_room_with_a_watcher(client: TestClient) -> tuple[dict, Any]:
    room = await create_room(client, "lobby")
    bob = await create_user(client, "bob")
    return room, await connect(client, room["id"], bob["id"], token=bob["token"])


async def unknown_room(make_client) -> Refusal:
    client = await make_client()
    _, watcher = await a_room_with_a_watcher(client)
    alice = await create_user(client, "alice")
    return Refusal(client, f"/ws/no-such-room/{alice['id']}", 404, "Room not found", 4004, watcher)


async def unknown_user(make_client) -> Refusal:
    client = await make_client()
    room, watcher = await a_room_with_a_watcher(client)
    return Refusal(client, f"/ws/{room['id']}/no-such-user", 404, "User not found", 4004, watcher)


async def missing_token(make_client) -> Refusal:
    client = await make_client(require_tokens=True)
    room, watcher = await a_room_with_a_watcher(client)
    alice = await create_user(client, "alice")
    return Refusal(client, f"/ws/{room['id']}/{alice['id']}", 401, "Unauthorized", 4001, watcher)


async def one_connection_too_many(make_client) -> Refusal:
    # Production: a socket for an unknown user with ?username= would create that user, if let in.
    client = await make_client(environment="production", require_tokens=False, max_connections_per_address=1)
    room, watcher = await a_room_with_a_watcher(client)
    return Refusal(client, f"/ws/{room['id']}/mallory-1?username=mallory", 429, "Too many connections", 1008,
                   watcher)


async def shutting_down(make_client) -> Refusal:
    client = await make_client(environment="production", require_tokens=False)
    room, watcher = await a_room_with_a_watcher(client)
    await client.app.shutdown()  # what run.py does on SIGTERM before it stops: every socket closed with 1001
    assert (await watcher.receive(timeout=TIMEOUT)).data == 1001
    return Refusal(client, f"/ws/{room['id']}/late-1?username=late", 503, "Server shutting down", 1001, watcher)


CASES = [unknown_room, unknown_user, missing_token, one_connection_too_many, shutting_down]


async def stored(client: TestClient) -> tuple[Any, Any]:
    """Every room (with its members) and every user."""
    return await (await client.get("/rooms")).json(), await (await client.get("/users")).json()


async def assert_no_one_heard_of_it(watcher: Any) -> None:
    """Nothing reaches the room's other socket: no user_joined, no user_left."""
    try:
        msg = await watcher.receive(timeout=0.3)
    except asyncio.TimeoutError:
        return
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED), (msg.type, msg.data)  # closed by the shutdown itself


async def refused_over_http_by_the_websockets_library(refusal: Refusal) -> None:
    url = f"ws://{refusal.client.host}:{refusal.client.port}{refusal.path}"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, open_timeout=TIMEOUT):
            pytest.fail("the handshake was accepted")
    response = refused.value.response
    assert response.status_code == refusal.status
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.body) == {"detail": refusal.reason, "close_code": refusal.code}


async def refused_over_http_by_aiohttp(refusal: Refusal) -> None:
    assert await refused_status(refusal.client, refusal.path) == refusal.status


async def closed_for_a_browser(refusal: Refusal) -> None:
    ws = await browser_socket(refusal.client, refusal.path)
    msg = await ws.receive(timeout=TIMEOUT)  # the first frame is the close: nothing of the room
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, refusal.code, refusal.reason)
    await ws.close()


@pytest.mark.parametrize("client_kind", [refused_over_http_by_the_websockets_library, refused_over_http_by_aiohttp,
                                         closed_for_a_browser], ids=["websockets", "aiohttp", "browser"])
@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
async def test_each_refusal_reaches_scripts_over_http_and_browsers_as_a_close(make_client, caplog, case,
                                                                               client_kind):
    caplog.set_level(logging.WARNING)
    refusal = await case(make_client)
    before = await stored(refusal.client)

    await client_kind(refusal)

    assert await stored(refusal.client) == before
    await assert_no_one_heard_of_it(refusal.watcher)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"WebSocket closed with code {refusal.code}: {refusal.reason}"]
    await refusal.watcher.close()


async def test_an_origin_the_server_refuses_is_a_close_and_an_allowed_one_gets_in(make_client):
    """4003 needs an Origin, so it is always a close; a script without Origin is let in."""
    client = await make_client(cors_origins=("https://app.example",))
    alice = await create_user(client, "alice")
    room = await create_room(client)
    path = f"/ws/{room['id']}/{alice['id']}"
    refused = await client.ws_connect(path, origin="https://evil.example")
    assert (await refused.receive(timeout=TIMEOUT)).data == 4003
    await refused.close()
    for origin in ("https://app.example", None):
        ws = await client.ws_connect(path, origin=origin)
        assert (await send_and_receive(ws, f"from {origin}"))["user_id"] == alice["id"]
        await ws.close()


# -- the old app's Quick Fix Script (test_websocket_fix.py), as a migrating user runs it -----------


async def quick_fix_script(api: str, ws_base: str) -> list[str]:
    """Written the way the old script is: the guide's flow, then its error-handling step, which opens
    a socket for an invalid room and user and counts a refused handshake as the pass."""
    passed = []
    async with aiohttp.ClientSession() as http:
        user = await (await http.post(f"{api}/users", json={"username": "test_user"})).json()
        room = await (await http.post(f"{api}/rooms", json={"name": "test_room"})).json()
        joined = await http.post(f"{api}/rooms/{room['id']}/join", json={"user_id": user["id"]})
        assert joined.status == 200, await joined.text()
        passed += ["user created", "room created", "joined"]
    async with websockets.connect(f"{ws_base}/ws/{room['id']}/{user['id']}", open_timeout=TIMEOUT) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "user_joined"
        await ws.send(json.dumps({"content": "Hello from the fix script"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["content"] == "Hello from the fix script"
        passed += ["connected", "message broadcast"]
    try:
        async with websockets.connect(f"{ws_base}/ws/invalid-room-id/invalid-user-id", open_timeout=TIMEOUT):
            pass  # the old script: "Should have failed with invalid IDs"
    except InvalidHandshake:
        passed.append("invalid ids refused")
    return passed


@pytest.mark.parametrize("env", [
    {"ENVIRONMENT": "development"},
    # Old scripts send no token; production states that explicitly.
    {"ENVIRONMENT": "production", "REQUIRE_TOKENS": "false"},
], ids=["development", "production"])
async def test_the_old_quick_fix_script_passes(start_server, env):
    server = start_server(**env)

    passed = await quick_fix_script(server.url, server.ws_url)

    assert passed == ["user created", "room created", "joined", "connected", "message broadcast",
                      "invalid ids refused"]
    assert [room["name"] for room in server.get_json("/rooms")] == ["test_room"]  # the refusal created nothing
    assert "WebSocket closed with code 4004: " in server.log_text()
