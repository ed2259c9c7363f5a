"""Who may use the chat: tokens, browser origins and per-address limits, over real sockets.

A refused socket must learn nothing of the room: its first frame is the close.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import WSMsgType

from helpers import (
    TIMEOUT, assert_error, browser_socket, connect, create_room, create_user, own_origin, receive, send_and_receive,
)
from raw_ws import CLOSE, RawSocket, close_code

GOOD_ORIGIN = "https://chat.example"
PREVIEW_ORIGINS = r"https://[a-z]+\.preview\.example"
UNAUTHORIZED_JOIN = "Unauthorized: a valid token for this user is required"


async def assert_refused_first(ws, code: int, reason: str) -> None:
    """The socket's very first frame is the close: no user_joined, no history, no message."""
    msg = await ws.receive(timeout=TIMEOUT)
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, code, reason), (msg.type, msg.data)
    await ws.close()


async def assert_nothing_more(ws, timeout: float = 0.3) -> None:
    with pytest.raises(asyncio.TimeoutError):
        frame = await ws.receive(timeout=timeout)
        pytest.fail(f"unexpected frame {frame}")


async def chatting_room(client):
    """alice in a room with some history; returns (alice, room, her socket)."""
    alice = await create_user(client, "alice")
    room = await create_room(client)
    ws = await connect(client, room["id"], alice["id"], token=alice["token"])
    await send_and_receive(ws, "a secret plan")
    return alice, room, ws


# -- tokens -------------------------------------------------------------------------------


async def test_a_socket_for_an_existing_user_needs_that_users_token(make_client):
    client = await make_client(require_tokens=True)
    alice, bob = await create_user(client, "alice"), await create_user(client, "bob")
    room = await create_room(client)
    url = f"/ws/{room['id']}/{alice['id']}"
    refused = [
        ({}, {}),
        ({"token": "not-the-token"}, {}),
        ({"token": bob["token"]}, {}),  # someone else's valid token
        ({}, {"Authorization": f"Bearer {bob['token']}"}),
        ({}, {"Authorization": alice["token"]}),  # no scheme: not a bearer token
        ({}, {"Authorization": f"Basic {alice['token']}"}),
        ({"token": alice["token"][:-1]}, {}),
    ]
    for params, headers in refused:
        ws = await browser_socket(client, url, params=params, headers=headers)
        await assert_refused_first(ws, 4001, "Unauthorized")

    by_query = await connect(client, room["id"], alice["id"], token=alice["token"])
    by_header = await client.ws_connect(url, headers={"Authorization": f"Bearer {alice['token']}"})
    assert (await receive(by_header))["type"] == "user_joined"
    assert (await send_and_receive(by_header, "signed in"))["user_id"] == alice["id"]
    for ws in (by_query, by_header):
        await ws.close()


async def test_a_token_that_is_not_utf8_is_just_a_wrong_token(make_client):
    client = await make_client(require_tokens=True)
    alice = await create_user(client, "alice")
    room = await create_room(client)
    garbled = (b"Authorization: Bearer " + alice["token"].encode()[:10] + b"\xff\xfe\r\n"
               + f"Origin: {own_origin(client)}\r\n".encode())
    raw = await RawSocket.connect(client.host, client.port, f"/ws/{room['id']}/{alice['id']}",
                                  extra_headers=garbled)
    frames = await raw.read_until_close_frame(timeout=TIMEOUT)
    raw.close()
    assert [(opcode, close_code(payload)) for opcode, payload in frames] == [(CLOSE, (4001, "Unauthorized"))]

    def join_with_garbled_header() -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(client.host, client.port, timeout=TIMEOUT)
        conn.putrequest("POST", f"/rooms/{room['id']}/join")
        conn.putheader("Authorization", b"Bearer \xff\xfe")
        body = json.dumps({"user_id": alice["id"]}).encode()
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        try:
            return response.status, response.read()
        finally:
            conn.close()

    status, body = await asyncio.to_thread(join_with_garbled_header)
    assert (status, json.loads(body)) == (401, {"detail": UNAUTHORIZED_JOIN})


async def test_join_for_an_existing_user_needs_that_users_token(make_client):
    client = await make_client(require_tokens=True)
    alice, bob = await create_user(client, "alice"), await create_user(client, "bob")
    room = await create_room(client)
    url = f"/rooms/{room['id']}/join"
    for body, headers in [
        ({"user_id": alice["id"]}, {}),
        ({"user_id": alice["id"], "token": bob["token"]}, {}),
        ({"user_id": alice["id"]}, {"Authorization": f"Bearer {bob['token']}"}),
        ({"user_id": alice["id"], "username": "alice"}, {}),  # a name is no credential
    ]:
        await assert_error(await client.post(url, json=body, headers=headers), 401, UNAUTHORIZED_JOIN)
    assert (await (await client.get(f"/rooms/{room['id']}")).json())["users"] == []

    joined = await client.post(url, json={"user_id": alice["id"], "token": alice["token"]})
    assert joined.status == 200
    assert await joined.json() == {"message": f"User alice joined room {room['name']}"}
    by_header = await client.post(url, json={"user_id": bob["id"]}, headers={"Authorization": f"Bearer {bob['token']}"})
    assert by_header.status == 200
    members = (await (await client.get(f"/rooms/{room['id']}")).json())["users"]
    assert sorted(members) == sorted([alice["id"], bob["id"]])  # two joins in one millisecond: either order


async def test_an_impostor_socket_receives_nothing_of_the_room(make_client):
    client = await make_client(require_tokens=True)
    alice, room, ws_alice = await chatting_room(client)
    impostor = await browser_socket(client, f"/ws/{room['id']}/{alice['id']}", params={"since": "0"})
    await assert_refused_first(impostor, 4001, "Unauthorized")
    # Nobody in the room saw the impostor come or go.
    assert (await send_and_receive(ws_alice, "still private"))["seq"] == 2
    await assert_nothing_more(ws_alice)
    presence = await (await client.get(f"/rooms/{room['id']}/presence", params={"token": alice["token"]})).json()
    assert presence == [{"user_id": alice["id"], "username": "alice", "connections": 1}]
    await ws_alice.close()


async def test_a_socket_created_user_gets_its_token_once_and_needs_it_after(make_client):
    client = await make_client(environment="production", require_tokens=True)
    url = "/ws/room-1/dora-1"
    first = await client.ws_connect(url, params={"username": "dora"})
    assert (await receive(first))["type"] == "user_joined"
    token_frame = await receive(first)
    assert set(token_frame) == {"type", "token"} and token_frame["type"] == "token"
    token = token_frame["token"]
    assert len(token) >= 32

    # The user exists now: a username alone no longer gets in, the token does, and is not sent again.
    intruder = await browser_socket(client, url, params={"username": "dora"})
    await assert_refused_first(intruder, 4001, "Unauthorized")
    second = await client.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
    assert (await receive(second))["type"] == "user_joined"
    await assert_nothing_more(second)
    assert (await receive(first))["type"] == "user_joined"  # the second socket, announced without its token
    await assert_nothing_more(first)
    joined = await client.post("/rooms/room-1/join", json={"user_id": "dora-1", "token": token})
    assert joined.status == 200 and "token" not in await joined.json()
    for ws in (first, second):
        await ws.close()


async def test_tokens_are_never_listed_or_logged(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = await make_client(environment="production", require_tokens=True)
    alice = await create_user(client, "alice")
    room = await create_room(client)
    ws_query = await connect(client, room["id"], alice["id"], token=alice["token"])
    ws_header = await client.ws_connect(f"/ws/{room['id']}/{alice['id']}",
                                        headers={"Authorization": f"Bearer {alice['token']}"})
    await receive(ws_header)
    await send_and_receive(ws_header, "hello")
    assert (await client.post(f"/rooms/{room['id']}/join",
                              json={"user_id": alice["id"], "token": alice["token"]})).status == 200
    typo = alice["token"][::-1]
    refused = await browser_socket(client, f"/ws/{room['id']}/{alice['id']}", params={"token": typo})
    await assert_refused_first(refused, 4001, "Unauthorized")
    auto = await client.ws_connect(f"/ws/{room['id']}/bob-1", params={"username": "bob"})
    await receive(auto)
    auto_token = (await receive(auto))["token"]

    tokens = (alice["token"], typo, auto_token)
    for path in ("/users", f"/users/{alice['id']}", "/users/bob-1", "/rooms", f"/rooms/{room['id']}",
                 f"/rooms/{room['id']}/messages", f"/rooms/{room['id']}/presence", "/_debug", "/health", "/metrics"):
        resp = await client.get(path, headers={"Authorization": f"Bearer {alice['token']}"})
        assert resp.status == 200, path
        text = await resp.text()
        assert not any(token in text for token in tokens), path
    for ws in (ws_query, ws_header, auto):
        await ws.close()
    # The test harness's own access log prints query strings; run.py's does not (see test_process).
    server_lines = "\n".join(record.getMessage() for record in caplog.records if record.name != "aiohttp.access")
    assert "Unauthorized" in server_lines
    assert not any(token in server_lines for token in tokens)


# -- a creation that loses the race ------------------------------------------------------

RACE_ROUNDS = 200


async def race_join_against_socket(client, room_id: str, user_id: str, socket_first: bool) -> str | None:
    """A victim joins with a new user id while an attacker opens a socket for that id with no token.

    Whoever creates the user gets its token and the other must be refused; the
    answer says what went wrong, or None.
    """
    async def victim() -> tuple[int, dict]:
        resp = await client.post(f"/rooms/{room_id}/join", json={"user_id": user_id, "username": "victim"})
        return resp.status, await resp.json()

    async def attacker() -> tuple[Any, Any]:
        try:
            ws = await client.ws_connect(f"/ws/{room_id}/{user_id}", params={"username": "mallory"})
        except aiohttp.WSServerHandshakeError as refused:
            return None, refused.status
        first = await ws.receive(timeout=TIMEOUT)
        return ws, first.data if first.type is WSMsgType.CLOSE else json.loads(first.data)["type"]

    if socket_first:
        (ws, first), (status, answer) = await asyncio.gather(attacker(), victim())
    else:
        (status, answer), (ws, first) = await asyncio.gather(victim(), attacker())
    try:
        if status == 200 and "token" in answer:  # the victim created the user
            return None if first in (4001, 401) else f"the attacker's socket was let in: {first}"
        if status == 401:  # the socket created it first: that id is the attacker's own, with its token
            second = await receive(ws)
            return None if (first, second["type"]) == ("user_joined", "token") else f"{first}, {second}"
        return f"the victim's join answered {status} {answer}, although the socket created the user"
    finally:
        if ws is not None:
            await ws.close()


@pytest.mark.both_stores
async def test_a_creation_that_loses_the_race_is_checked_like_an_existing_user(make_client):
    # 400 creations from one address: more than CREATE_RATE_PER_MINUTE allows, and not what is tested here.
    client = await make_client(environment="production", require_tokens=True, create_rate_per_minute=0)
    room = await create_room(client)

    failures = [failure for n in range(RACE_ROUNDS)
                if (failure := await race_join_against_socket(client, room["id"], f"victim-{n}", n % 2 == 1))]

    assert failures == [], f"{len(failures)} of {RACE_ROUNDS}: {failures[:3]}"


# -- reading a room -----------------------------------------------------------------------

MEMBERS_ONLY = "Unauthorized: the token of a member of this room is required"


@pytest.mark.both_stores
async def test_with_tokens_on_only_a_member_may_read_a_rooms_history_and_presence(make_client):
    client = await make_client(require_tokens=True)
    alice, room, ws_alice = await chatting_room(client)
    bob = await create_user(client, "bob")  # a user, but not in this room
    for path in (f"/rooms/{room['id']}/messages", f"/rooms/{room['id']}/messages?limit=10&before=5",
                 f"/rooms/{room['id']}/presence", "/rooms/no-such-room/messages"):
        for headers, params in [({}, {}), ({}, {"token": bob["token"]}),
                                ({"Authorization": f"Bearer {bob['token']}"}, {}),
                                ({"Authorization": f"Bearer {alice['token'][::-1]}"}, {})]:
            await assert_error(await client.get(path, headers=headers, params=params), 401, MEMBERS_ONLY)

    by_header = await client.get(f"/rooms/{room['id']}/messages",
                                 headers={"Authorization": f"Bearer {alice['token']}"})
    assert [m["content"] for m in await by_header.json()] == ["a secret plan"]
    by_query = await client.get(f"/rooms/{room['id']}/presence", params={"token": alice["token"]})
    assert await by_query.json() == [{"user_id": alice["id"], "username": "alice", "connections": 1}]
    await ws_alice.close()


@pytest.mark.both_stores
async def test_with_tokens_off_old_clients_read_without_a_token(make_client):
    client = await make_client(require_tokens=False)
    _, room, ws_alice = await chatting_room(client)
    assert [m["content"] for m in await (await client.get(f"/rooms/{room['id']}/messages")).json()] == ["a secret plan"]
    assert (await client.get(f"/rooms/{room['id']}/presence")).status == 200
    await ws_alice.close()


# -- origins ------------------------------------------------------------------------------


@pytest.fixture
async def strict_client(make_client):
    return await make_client(cors_origins=(GOOD_ORIGIN,), cors_origin_regex=PREVIEW_ORIGINS)


@pytest.mark.parametrize("origin", [
    "https://evil.example",
    "http://chat.example",  # another scheme is another origin
    "https://chat.example.evil.example",
    "https://chat.example:8443",
    "https://x.preview.example.evil.example",  # the regex must match the whole origin
    "null",  # sandboxed frames and file:// pages
])
async def test_a_socket_from_a_foreign_origin_is_closed_with_4003_and_learns_nothing(strict_client, origin):
    alice, room, ws_alice = await chatting_room(strict_client)
    hijack = await strict_client.ws_connect(f"/ws/{room['id']}/{alice['id']}", origin=origin,
                                            params={"since": "0"})
    await assert_refused_first(hijack, 4003, "Origin not allowed")
    assert (await send_and_receive(ws_alice, "after the attempt"))["seq"] == 2
    await assert_nothing_more(ws_alice)
    await ws_alice.close()


async def test_allowed_origins_and_the_servers_own_page_may_open_sockets(strict_client):
    user = await create_user(strict_client)
    room = await create_room(strict_client)
    own = f"http://{strict_client.host}:{strict_client.port}"
    for origin in (GOOD_ORIGIN, "https://review.preview.example", own, own.replace("http:", "https:"), None):
        ws = await strict_client.ws_connect(f"/ws/{room['id']}/{user['id']}", origin=origin)
        assert (await receive(ws))["type"] == "user_joined", origin
        await ws.close()
    other_port = f"http://{strict_client.host}:{strict_client.port + 1}"
    ws = await strict_client.ws_connect(f"/ws/{room['id']}/{user['id']}", origin=other_port)
    await assert_refused_first(ws, 4003, "Origin not allowed")


async def test_production_without_cors_origins_refuses_every_foreign_page(make_client):
    client = await make_client(environment="production", require_tokens=False)
    ws = await client.ws_connect("/ws/lobby/u-1", params={"username": "alice"}, origin=GOOD_ORIGIN)
    await assert_refused_first(ws, 4003, "Origin not allowed")
    assert (await client.get("/rooms/lobby")).status == 404  # the refused socket created nothing
    own = await client.ws_connect("/ws/lobby/u-1", params={"username": "alice"},
                                  origin=f"http://{client.host}:{client.port}")
    assert (await receive(own))["type"] == "user_joined"
    await own.close()


# -- host names ---------------------------------------------------------------------------

HOST_NOT_ALLOWED = "Host not allowed"


@pytest.mark.both_stores
async def test_a_dns_rebinding_page_is_refused_when_allowed_hosts_is_set(make_client):
    """A page on evil.example, whose name the attacker re-pointed at this server, is "same host" by its Host."""
    client = await make_client(environment="production", require_tokens=False, allowed_hosts=("127.0.0.1",))
    evil = f"evil.example:{client.port}"
    rebound = {"Host": evil, "Origin": f"http://{evil}"}

    for method, path, body in [("GET", "/rooms", None), ("GET", "/users", None), ("GET", "/health", None),
                               ("POST", "/users", {"username": "mallory"}), ("GET", "/chat", None)]:
        await assert_error(await client.request(method, path, json=body, headers=rebound), 400, HOST_NOT_ALLOWED)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws/lobby/u-1", params={"username": "mallory"}, headers=rebound)
    assert refused.value.status == 400
    assert (await client.get("/users")).status == 200 and await (await client.get("/users")).json() == []

    # The listed name, with any port (the same server behind a proxy on 443) and in any case, is served.
    for host in (f"127.0.0.1:{client.port}", "127.0.0.1", "127.0.0.1:443"):
        own = await client.ws_connect("/ws/lobby/u-1", params={"username": "alice"},
                                      headers={"Host": host, "Origin": f"http://{host}"})
        assert (await receive(own))["type"] == "user_joined", host
        await own.close()


async def test_a_host_header_that_is_not_a_host_name_is_refused(make_client):
    client = await make_client(allowed_hosts=("chat.example",))
    for host in ("chat.example.evil.example", "evil.example", "chat.example:x", "user@chat.example",
                 "chat.example/", "[::1]", ""):
        await assert_error(await client.get("/rooms", headers={"Host": host}), 400, HOST_NOT_ALLOWED)
    for host in ("chat.example", "CHAT.Example:8000", "chat.example."):
        assert (await client.get("/rooms", headers={"Host": host})).status == 200, host


async def test_without_allowed_hosts_every_host_is_served_as_before(make_client):
    client = await make_client(environment="production", require_tokens=False)
    assert (await client.get("/rooms", headers={"Host": "anything.example:1234"})).status == 200
    # Which is the risk ALLOWED_HOSTS removes: a rebound page counts as this server's own.
    evil = f"evil.example:{client.port}"
    rebound = await client.ws_connect("/ws/lobby/u-1", params={"username": "mallory"},
                                      headers={"Host": evil, "Origin": f"http://{evil}"})
    assert (await receive(rebound))["type"] == "user_joined"
    await rebound.close()


def preflight_headers(origin: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}


async def test_cors_preflight_from_an_allowed_origin_is_answered(strict_client):
    resp = await strict_client.options("/rooms", headers=preflight_headers(GOOD_ORIGIN))
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == GOOD_ORIGIN
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "content-type" in resp.headers["Access-Control-Allow-Headers"].lower()
    assert "Origin" in resp.headers.getall("Vary")
    created = await strict_client.post("/rooms", json={"name": "from the page"}, headers={"Origin": GOOD_ORIGIN})
    assert created.status == 200 and created.headers["Access-Control-Allow-Origin"] == GOOD_ORIGIN


async def test_cors_refuses_a_foreign_origin_and_writes_nothing(strict_client):
    evil = "https://evil.example"
    preflight = await strict_client.options("/rooms", headers=preflight_headers(evil))
    assert preflight.status == 403 and "Access-Control-Allow-Origin" not in preflight.headers
    # A form post needs no preflight: the server itself must refuse it.
    for path, body in (("/rooms", {"name": "spam"}), ("/users", {"username": "spam"})):
        resp = await strict_client.post(path, json=body, headers={"Origin": evil})
        await assert_error(resp, 403, "Origin not allowed")
        assert "Access-Control-Allow-Origin" not in resp.headers
    assert await (await strict_client.get("/rooms")).json() == []
    assert await (await strict_client.get("/users")).json() == []
    # A read is answered, but without the header a browser needs to show it to the foreign page.
    read = await strict_client.get("/rooms", headers={"Origin": evil})
    assert read.status == 200 and "Access-Control-Allow-Origin" not in read.headers


# -- limits -------------------------------------------------------------------------------


async def test_connections_per_address_are_limited(make_client):
    client = await make_client(max_connections_per_address=2)
    users = [await create_user(client, name) for name in ("alice", "bob", "carol", "dave")]
    room = await create_room(client)
    first = await connect(client, room["id"], users[0]["id"])
    second = await connect(client, room["id"], users[1]["id"])
    await receive(first)  # bob joined
    third = await browser_socket(client, f"/ws/{room['id']}/{users[2]['id']}", params={"since": "0"})
    await assert_refused_first(third, 1008, "Too many connections")
    await assert_nothing_more(first)  # carol was never announced
    await second.close()
    assert (await receive(first))["type"] == "user_left"
    fourth = await connect(client, room["id"], users[3]["id"])
    for ws in (first, fourth):
        await ws.close()


async def test_tokens_never_reach_the_log_of_a_real_server(start_server):
    server = start_server(LOG_LEVEL="DEBUG", REQUIRE_TOKENS="true")
    async with aiohttp.ClientSession(server.url) as session:
        alice = await (await session.post("/users", json={"username": "alice"})).json()
        room = await (await session.post("/rooms", json={"name": "lobby"})).json()
        url = f"/ws/{room['id']}/{alice['id']}"
        async with session.ws_connect(url, params={"token": alice["token"]}) as ws:
            assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "user_joined"
        async with session.ws_connect(url, headers={"Authorization": f"Bearer {alice['token']}"}) as ws:
            assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "user_joined"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # a script: refused over HTTP
            await session.ws_connect(url, params={"token": "typo" + alice["token"]})
        assert refused.value.status == 401
        join = await session.post(f"/rooms/{room['id']}/join", json={"user_id": alice["id"],
                                                                      "token": alice["token"]})
        assert join.status == 200
    assert server.stop() == 0
    log = server.log_text()
    assert f"GET /ws/{room['id']}/{alice['id']}" in log  # requests are logged at DEBUG, without their query
    assert "WebSocket closed with code 4001: Unauthorized" in log
    assert alice["token"] not in log


@pytest.mark.parametrize("junk", ["not json", '{"content": 5}', b"\x00binary"])
async def test_a_flood_of_invalid_frames_is_rate_limited_too(make_client, junk):
    """Junk costs the server a parse and an answer each: it spends the same budget as messages."""
    client = await make_client(rate_limit_per_second=5, rate_limit_burst=10)
    alice, bob = await create_user(client, "alice"), await create_user(client, "bob")
    room = await create_room(client)
    ws_bob = await connect(client, room["id"], bob["id"])
    flooder = await connect(client, room["id"], alice["id"])
    await receive(ws_bob)  # alice joined
    send = flooder.send_bytes if isinstance(junk, bytes) else flooder.send_str
    for _ in range(200):
        await send(junk)
    errors = []
    while (msg := await flooder.receive(timeout=TIMEOUT)).type is WSMsgType.TEXT:
        errors.append(msg.json()["message"])
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1008, "Rate limit exceeded")
    assert "Rate limit exceeded: slow down" in errors and len(errors) < 40
    left = await receive(ws_bob)
    assert (left["type"], left["user_id"]) == ("user_left", alice["id"])
    await ws_bob.close()


async def test_a_socket_refused_for_the_connection_limit_creates_nothing(make_client):
    client = await make_client(environment="production", require_tokens=False, max_connections_per_address=1)
    first = await client.ws_connect("/ws/lobby/u-1", params={"username": "alice"})
    assert (await receive(first))["type"] == "user_joined"
    for n in range(3):
        extra = await browser_socket(client, f"/ws/room-{n}/intruder-{n}", params={"username": "mallory"})
        await assert_refused_first(extra, 1008, "Too many connections")
    assert [room["id"] for room in await (await client.get("/rooms")).json()] == ["lobby"]
    assert [user["id"] for user in await (await client.get("/users")).json()] == ["u-1"]
    await first.close()


@pytest.mark.parametrize("bad_id", ["r" * 101, "evil%0AINFO%20server.ws:%20User%20admin%20connected", "tab%09id"],
                         ids=["too long", "a forged log line", "a tab"])
async def test_auto_creation_refuses_ids_the_api_would_not_make(make_client, caplog, bad_id):
    client = await make_client(environment="production", require_tokens=False)
    ws = await browser_socket(client, f"/ws/{bad_id}/u-1", params={"username": "alice"})
    await assert_refused_first(ws, 4004, "Room not found")
    ws = await browser_socket(client, f"/ws/lobby/{bad_id}", params={"username": "alice"})
    await assert_refused_first(ws, 4004, "User not found")
    await assert_error(await client.post(f"/rooms/{bad_id}/join", json={"user_id": "u-1", "username": "alice"}),
                       404, "Room not found")
    decoded = unquote(bad_id)
    await assert_error(await client.post("/rooms/lobby/join", json={"user_id": decoded, "username": "alice"}),
                       404 if len(decoded) <= 100 else 422,
                       "User not found" if len(decoded) <= 100 else "user_id must be at most 100 characters")
    assert await (await client.get("/rooms")).json() == []
    assert await (await client.get("/users")).json() == []
    assert "User admin connected" not in caplog.text
