"""The chat socket: admission and refusals, frames, broadcast order, replay."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import WSMsgType

from helpers import (
    assert_error, browser_socket, connect, create_room, create_user, receive, receive_close, send_and_receive,
)

pytestmark = pytest.mark.both_stores


async def history(client, room_id):
    return await (await client.get(f"/rooms/{room_id}/messages")).json()


async def test_join_frame_then_broadcast_to_the_room_only(client):
    alice, bob, carol = [await create_user(client, name) for name in ("alice", "bob", "carol")]
    lobby, other = await create_room(client, "lobby"), await create_room(client, "other")
    ws_alice = await connect(client, lobby["id"], alice["id"])
    ws_carol = await connect(client, other["id"], carol["id"])
    ws_bob = await connect(client, lobby["id"], bob["id"])
    joined = await receive(ws_alice)
    assert joined["type"] == "user_joined" and joined["username"] == "bob"
    assert joined["message"] == "bob joined the chat"

    sent = await send_and_receive(ws_bob, "  hi all  ")
    got = await receive(ws_alice)
    assert got == sent
    assert set(got) == {"type", "id", "seq", "room_id", "user_id", "username", "content", "timestamp"}
    assert got["content"] == "hi all" and got["seq"] == 1 and got["username"] == "bob"
    with pytest.raises(asyncio.TimeoutError):
        await ws_carol.receive(timeout=0.3)  # nothing from another room
    for ws in (ws_alice, ws_bob, ws_carol):
        await ws.close()


async def test_leaving_sends_user_left(client):
    alice, bob = await create_user(client, "alice"), await create_user(client, "bob")
    room = await create_room(client)
    ws_alice = await connect(client, room["id"], alice["id"])
    ws_bob = await connect(client, room["id"], bob["id"])
    await receive(ws_alice)  # bob joined
    await ws_bob.close()
    left = await receive(ws_alice)
    assert left["type"] == "user_left" and left["user_id"] == bob["id"]
    assert left["message"] == "bob left the chat"
    await ws_alice.close()


async def test_connecting_makes_a_member(client):
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    assert (await (await client.get(f"/rooms/{room['id']}")).json())["users"] == [user["id"]]
    await ws.close()


@pytest.mark.parametrize("which, reason", [("room", "Room not found"), ("user", "User not found")])
async def test_a_browsers_socket_for_an_unknown_room_or_user_is_closed_with_4004(client, which, reason, caplog):
    user = await create_user(client)
    room = await create_room(client)
    room_id, user_id = ("missing", user["id"]) if which == "room" else (room["id"], "missing")
    ws = await browser_socket(client, f"/ws/{room_id}/{user_id}")
    assert await receive_close(ws) == (4004, reason)
    assert f"WebSocket closed with code 4004: {reason}" in caplog.text
    assert len(await (await client.get("/rooms")).json()) == 1
    assert len(await (await client.get("/users")).json()) == 1


async def test_socket_auto_creates_room_and_user_in_production(make_client):
    client = await make_client(environment="production", require_tokens=False)
    ws = await client.ws_connect("/ws/0123456789abcdef/user-7", params={"username": " dora "})
    joined = await receive(ws)
    assert joined["type"] == "user_joined" and joined["username"] == "dora"
    room = await (await client.get("/rooms/0123456789abcdef")).json()
    assert room["name"] == "Room 01234567" and room["users"] == ["user-7"]
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive(timeout=0.3)  # no token frame unless tokens are required
    await ws.close()


@pytest.mark.parametrize("username", ["x", "nul\u0000"])
async def test_socket_auto_user_needs_two_characters_of_storable_text(make_client, username):
    client = await make_client(environment="production", require_tokens=False)
    room = await create_room(client)
    ws = await browser_socket(client, f"/ws/{room['id']}/user-8", params={"username": username})
    assert await receive_close(ws) == (4004, "User not found")
    await assert_error(await client.get("/users/user-8"), 404, "User not found")


@pytest.mark.parametrize("frame, error", [
    ("hello", 'Frames must be JSON objects like {"content": "hello"}'),
    ("[1, 2]", 'Frames must be JSON objects like {"content": "hello"}'),
    ('"text"', 'Frames must be JSON objects like {"content": "hello"}'),
    ("{}", "content is required and must be a string"),
    ('{"content": 5}', "content is required and must be a string"),
    ('{"content": null}', "content is required and must be a string"),
    ('{"content": "   "}', "content must not be empty"),
    ('{"content": "' + "x" * 4001 + '"}', "content is longer than 4000 characters"),
    ('{"type": "typing", "content": "x"}', "Unknown frame type: typing"),
    ('{"content": "a\\u0000b"}', "content must be valid Unicode text, without NUL characters"),
    ('{"content": "a\\ud800b"}', "content must be valid Unicode text, without NUL characters"),
])
async def test_invalid_frames_get_an_error_and_store_nothing(client, frame, error):
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    await ws.send_str(frame)
    assert await receive(ws) == {"type": "error", "message": error}
    assert await history(client, room["id"]) == []
    # The socket stays usable.
    assert (await send_and_receive(ws, "still here"))["seq"] == 1
    await ws.close()


async def test_binary_frame_gets_an_error(client):
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    await ws.send_bytes(b'{"content": "hi"}')
    assert await receive(ws) == {"type": "error", "message": "Binary frames are not supported; send JSON text"}
    assert (await send_and_receive(ws, "text works"))["seq"] == 1
    await ws.close()


async def test_type_message_is_accepted(client):
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    await ws.send_json({"type": "message", "content": "typed"})
    assert (await receive(ws))["content"] == "typed"
    await ws.close()


async def test_oversized_frame_closes_with_1009(make_client):
    client = await make_client(max_frame_bytes=1024)
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    await ws.send_str('{"content": "' + "x" * 2000 + '"}')
    assert await receive_close(ws) == (1009, "Message too big")
    assert await history(client, room["id"]) == []


async def test_concurrent_senders_are_received_in_seq_order_once(make_client):
    client = await make_client(rate_limit_per_second=0)
    users = [await create_user(client, f"user{n}") for n in range(4)]
    room = await create_room(client)
    sockets = [await connect(client, room["id"], user["id"]) for user in users]
    for index, ws in enumerate(sockets):  # drain the join notices of later sockets
        for _ in range(len(sockets) - index - 1):
            assert (await receive(ws))["type"] == "user_joined"
    per_sender = 25

    async def chat(ws, name):
        for n in range(per_sender):
            await ws.send_json({"content": f"{name}-{n}"})

    await asyncio.gather(*(chat(ws, user["username"]) for ws, user in zip(sockets, users)))
    total = per_sender * len(sockets)
    for ws in sockets:
        seqs = [(await receive(ws))["seq"] for _ in range(total)]
        assert seqs == list(range(1, total + 1))
    stored = await (await client.get(f"/rooms/{room['id']}/messages", params={"limit": 1000})).json()
    assert [m["seq"] for m in stored] == list(range(1, total + 1))
    for user in users:  # each sender's own messages keep their order
        mine = [m["content"] for m in stored if m["user_id"] == user["id"]]
        assert mine == [f"{user['username']}-{n}" for n in range(per_sender)]
    for ws in sockets:
        await ws.close()


async def test_reconnect_with_since_replays_what_was_missed_once(client):
    alice, bob = await create_user(client, "alice"), await create_user(client, "bob")
    room = await create_room(client)
    ws_alice = await connect(client, room["id"], alice["id"])
    ws_bob = await connect(client, room["id"], bob["id"])
    await receive(ws_alice)
    seen = (await send_and_receive(ws_alice, "before the drop"))["seq"]
    await receive(ws_bob)
    await ws_alice.close()
    for n in range(3):
        await send_and_receive(ws_bob, f"missed {n}")
    ws_alice = await connect(client, room["id"], alice["id"], since=seen)
    replayed = [await receive(ws_alice) for _ in range(3)]
    assert [m["content"] for m in replayed] == ["missed 0", "missed 1", "missed 2"]
    assert [m["seq"] for m in replayed] == [2, 3, 4]
    live = await send_and_receive(ws_bob, "after the reconnect")
    assert await receive(ws_alice) == live
    for ws in (ws_alice, ws_bob):
        await ws.close()


async def test_replay_and_live_messages_do_not_overlap(make_client):
    client = await make_client(rate_limit_per_second=0)
    alice, bob = await create_user(client, "alice"), await create_user(client, "bob")
    room = await create_room(client)
    ws_bob = await connect(client, room["id"], bob["id"])
    for n in range(450):  # more than one replay page
        await ws_bob.send_json({"content": f"old {n}"})
    for _ in range(450):
        await receive(ws_bob)

    async def keep_talking():
        for n in range(50):
            await ws_bob.send_json({"content": f"new {n}"})
            await asyncio.sleep(0)

    talking = asyncio.create_task(keep_talking())
    ws_alice = await connect(client, room["id"], alice["id"], since=0)
    seqs = []
    while len(seqs) < 500:
        frame = await receive(ws_alice)
        if frame["type"] == "message":
            seqs.append(frame["seq"])
    await talking
    assert seqs == list(range(1, 501))
    for ws in (ws_alice, ws_bob):
        await ws.close()


async def test_bad_since_gets_an_error_frame(client):
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"], since="yesterday")
    assert await receive(ws) == {"type": "error", "message": "since must be a whole number, 0 or more"}
    assert (await send_and_receive(ws, "fine"))["seq"] == 1
    await ws.close()


async def test_too_many_sockets_for_one_user_is_1008(make_client):
    client = await make_client(max_connections_per_user=2)
    user = await create_user(client)
    room = await create_room(client)
    first, second = await connect(client, room["id"], user["id"]), await connect(client, room["id"], user["id"])
    third = await browser_socket(client, f"/ws/{room['id']}/{user['id']}")
    assert await receive_close(third) == (1008, "Too many connections")
    await first.close()
    await receive(second)  # user_left of the first
    fourth = await connect(client, room["id"], user["id"])
    for ws in (second, fourth):
        await ws.close()


async def test_flooding_gets_errors_then_1008(make_client):
    client = await make_client(rate_limit_per_second=1, rate_limit_burst=3)
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    for n in range(20):
        await ws.send_json({"content": f"flood {n}"})
    frames = []
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type is not WSMsgType.TEXT:
            break
        frames.append(msg.json())
    assert msg.type is WSMsgType.CLOSE and (msg.data, msg.extra) == (1008, "Rate limit exceeded")
    assert [f["type"] for f in frames[:3]] == ["message"] * 3
    assert {"type": "error", "message": "Rate limit exceeded: slow down"} in frames
    assert len(await history(client, room["id"])) == 3
