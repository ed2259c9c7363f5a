"""Property-based fuzzing (hypothesis) of what clients send: socket frames, raw bytes, HTTP bodies.

One server and one room live through all the examples of a test, as a real
server lives through its clients: whatever one frame did must not spoil the
next. Each frame is sent on its own and its answer awaited, so a failure
points at one frame, which hypothesis then shrinks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpers import TIMEOUT, connect, create_room, create_user, receive
from raw_ws import RawSocket, client_frame
from server.config import Config

# The default limits are the ones under fire.
FRAME_LIMIT = Config.max_frame_bytes  # bytes (MAX_FRAME_BYTES)
LENGTH_LIMIT = Config.max_message_length  # characters of content (MAX_MESSAGE_LENGTH)
# One server for all examples is the point; the rate limit is tested in test_socket.
SETTINGS = dict(deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

TEXT, BINARY = WSMsgType.TEXT.value, WSMsgType.BINARY.value


# -- what clients send ------------------------------------------------------------------

# st.text() keeps to text with a UTF-8 form; a JSON "\\ud800" escape can give a client more than that.
any_char = st.characters() | st.integers(0xD800, 0xDFFF).map(chr)
any_text = st.text(any_char)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
contents = (any_text | st.text(alphabet=" \t\r\n\u00a0\u2028\u3000x\u00e9", max_size=12) | json_values
            | st.integers(LENGTH_LIMIT - 2, LENGTH_LIMIT + 2).map(lambda n: " " + "\u00e9" * n + " "))
chat_like = st.fixed_dictionaries(
    {"content": contents},
    # Fields a client might add to pass as someone else, or to pick its own seq.
    optional={"type": st.sampled_from(["message", "typing", "Message", ""]) | json_values,
              "user_id": st.text(max_size=12), "username": st.text(max_size=12), "seq": st.integers(),
              "room_id": st.text(max_size=12), "id": st.text(max_size=12)},
)


def encode(value: Any, ascii_only: bool) -> bytes:
    # "surrogatepass" lets a lone surrogate through as bytes that are not UTF-8.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def padded_message(size: int) -> bytes:
    """A valid chat frame of exactly `size` bytes."""
    return b'{"content": "big"}' + b" " * (size - 18)


def nested(depth: int, inside_content: bool) -> bytes:
    brackets = "[" * depth + "]" * depth
    return (f'{{"content": {brackets}}}' if inside_content else brackets).encode()


sizes = st.integers(FRAME_LIMIT - 2, FRAME_LIMIT + 2) | st.integers(FRAME_LIMIT + 1, 6 * FRAME_LIMIT)
client_frames = st.one_of(
    st.tuples(st.just(TEXT), st.builds(encode, json_values | chat_like, st.booleans())),
    st.tuples(st.just(TEXT), any_text.map(lambda text: text.encode("utf-8", "surrogatepass"))),
    st.tuples(st.just(TEXT), st.binary(max_size=40)),  # often not UTF-8 at all
    st.tuples(st.just(BINARY), st.binary(max_size=40) | st.builds(encode, chat_like, st.just(True))),
    st.tuples(st.just(TEXT), sizes.map(padded_message)),
    st.tuples(st.just(BINARY), sizes.map(bytes)),
    # Python's JSON parser gives up near the recursion limit (1000, which hypothesis raises while it runs).
    st.tuples(st.just(TEXT), st.builds(nested, st.integers(1, FRAME_LIMIT // 2 - 20), st.booleans())),
)


# -- what the contract says the server answers ------------------------------------------------


@dataclass
class Expected:
    kind: str  # "message", "error" or "close"
    content: str | None = None
    code: int | None = None


def expected_answer(opcode: int, payload: bytes) -> Expected:
    if len(payload) > FRAME_LIMIT:
        return Expected("close", code=1009)
    if opcode == BINARY:
        return Expected("error")
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return Expected("close", code=1007)  # RFC 6455: a text frame must be UTF-8
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return Expected("error")
    if not isinstance(data, dict) or data.get("type", "message") != "message":
        return Expected("error")
    content = data.get("content")
    if not isinstance(content, str) or not content.strip() or len(content.strip()) > LENGTH_LIMIT:
        return Expected("error")
    try:
        content.encode()
    except UnicodeEncodeError:
        return Expected("error")  # a lone surrogate from a \ud800 escape
    return Expected("message", content.strip())


# -- one room under fire -------------------------------------------------------------------


@dataclass
class Room:
    client: Any
    room_id: str
    fuzzer: dict[str, Any]
    fuzzer_ws: Any
    watcher: dict[str, Any]
    watcher_ws: Any
    noise: dict[str, Any]
    seq: int = 0


@pytest.fixture
async def room(make_client):
    client = await make_client(max_frame_bytes=FRAME_LIMIT, max_message_length=LENGTH_LIMIT, rate_limit_per_second=0)
    fuzzer, watcher, noise = [await create_user(client, name) for name in ("fuzzer", "watcher", "noise")]
    room_id = (await create_room(client))["id"]
    watcher_ws = await connect(client, room_id, watcher["id"])
    fuzzer_ws = await connect(client, room_id, fuzzer["id"])
    assert (await receive(watcher_ws))["type"] == "user_joined"
    state = Room(client, room_id, fuzzer, fuzzer_ws, watcher, watcher_ws, noise)
    yield state
    for ws in (state.fuzzer_ws, state.watcher_ws):
        await ws.close()


async def stored_after(room: Room, seq: int) -> list[dict[str, Any]]:
    resp = await room.client.get(f"/rooms/{room.room_id}/messages", params={"after": str(seq)})
    return await resp.json()


@settings(max_examples=400, **SETTINGS)
@given(frame=client_frames)
# Frames that once broke the server, kept as fixed examples beside the random ones.
@example(frame=(TEXT, nested(30000, inside_content=False)))
@example(frame=(TEXT, nested(30000, inside_content=True)))
@example(frame=(TEXT, padded_message(FRAME_LIMIT)))
@example(frame=(TEXT, b'{"content": "lone \\ud800 surrogate"}'))
@example(frame=(TEXT, b'{"type": "\\udfff", "content": "x"}'))
async def test_every_frame_is_answered_as_the_contract_says(room, frame):
    opcode, payload = frame
    expected = expected_answer(opcode, payload)
    before = room.seq
    await room.fuzzer_ws.send_frame(payload, WSMsgType(opcode))

    if expected.kind == "close":
        msg = await room.fuzzer_ws.receive(timeout=TIMEOUT)
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, expected.code)
        await room.fuzzer_ws.close()
        left = await receive(room.watcher_ws)
        assert (left["type"], left["user_id"]) == ("user_left", room.fuzzer["id"])
        room.fuzzer_ws = await connect(room.client, room.room_id, room.fuzzer["id"])
        assert (await receive(room.watcher_ws))["type"] == "user_joined"
    elif expected.kind == "error":
        answer = await receive(room.fuzzer_ws)
        assert set(answer) == {"type", "message"} and answer["type"] == "error"
        assert isinstance(answer["message"], str) and answer["message"]
    else:
        answer = await receive(room.fuzzer_ws)
        room.seq += 1
        # Whatever the frame claimed, the message is the socket's user's, with the room's next seq.
        assert {key: answer[key] for key in ("type", "seq", "room_id", "user_id", "username", "content")} == {
            "type": "message", "seq": room.seq, "room_id": room.room_id, "user_id": room.fuzzer["id"],
            "username": "fuzzer", "content": expected.content}
        assert await receive(room.watcher_ws) == answer

    # The well-behaved client's next message is the next thing both sockets see: nothing else got through.
    room.seq += 1
    await room.watcher_ws.send_json({"content": f"still here {room.seq}"})
    echoed = await receive(room.watcher_ws)
    assert (echoed["content"], echoed["seq"]) == (f"still here {room.seq}", room.seq)
    assert await receive(room.fuzzer_ws) == echoed
    stored = [message["content"] for message in await stored_after(room, before)]
    assert stored == ([expected.content] if expected.kind == "message" else []) + [echoed["content"]]


@settings(max_examples=60, **SETTINGS)
@given(garbage=st.binary(min_size=1, max_size=200)
       | st.builds(lambda payload, fin: client_frame(0x0, payload, fin), st.binary(max_size=50), st.booleans())
       | st.builds(lambda opcode, payload: client_frame(opcode, payload), st.integers(0, 15), st.binary(max_size=50)))
async def test_raw_garbage_on_the_wire_harms_no_one_else(room, garbage):
    """Bytes that are not frames, continuations of nothing, reserved opcodes: the others keep chatting."""
    listeners = (room.watcher_ws, room.fuzzer_ws)
    raw = await RawSocket.connect(room.client.host, room.client.port, f"/ws/{room.room_id}/{room.noise['id']}")
    left = set()
    try:
        for ws in listeners:
            assert ((await receive(ws))["type"], ws) == ("user_joined", ws)
        await raw.send(garbage)
        room.seq += 1
        await room.watcher_ws.send_json({"content": f"over the noise {room.seq}"})
        for ws in listeners:
            frame = await receive(ws)
            if frame["type"] == "user_left":  # the server dropped the garbage socket first
                assert frame["user_id"] == room.noise["id"]
                left.add(ws)
                frame = await receive(ws)
            assert (frame["type"], frame["content"], frame["seq"]) == ("message", f"over the noise {room.seq}",
                                                                       room.seq)
    finally:
        raw.close()
    for ws in listeners:  # however it ended, the garbage socket leaves once
        if ws not in left:
            frame = await receive(ws)
            assert (frame["type"], frame["user_id"]) == ("user_left", room.noise["id"])
    stored = [message["content"] for message in await stored_after(room, room.seq - 1)]
    assert stored == [f"over the noise {room.seq}"]


usernames = st.text(any_char, max_size=60) | st.text(alphabet=" \t\n\u00a0ab", max_size=6) | json_values
bodies = st.one_of(
    st.builds(encode, st.fixed_dictionaries({}, optional={"username": usernames, "name": usernames,
                                                          "user_id": usernames, "token": usernames}),
              st.booleans()),
    st.builds(encode, json_values, st.booleans()),
    st.binary(max_size=60),
    st.builds(nested, st.integers(500, 30000), st.booleans()),
)


@settings(max_examples=200, **SETTINGS)
@given(path=st.sampled_from(["/users", "/rooms", "/rooms/{room}/join", "/rooms/missing/join"]), body=bodies)
@example(path="/users", body=nested(30000, inside_content=False))
@example(path="/rooms", body=b'{"name": "\\ud800"}')
@example(path="/rooms/{room}/join", body=b'{"user_id": "x", "token": "\\udfff"}')
async def test_http_bodies_are_refused_cleanly_and_nothing_invalid_is_stored(room, path, body):
    resp = await room.client.post(path.format(room=room.room_id), data=body,
                                  headers={"Content-Type": "application/json"})
    answer = await resp.json()
    assert resp.status in (200, 404, 413, 422), answer
    if resp.status != 200:
        assert set(answer) == {"detail"} and isinstance(answer["detail"], str)
    for user in await (await room.client.get("/users")).json():
        assert 2 <= len(user["username"]) <= 50 and user["username"] == user["username"].strip()
    for stored_room in await (await room.client.get("/rooms")).json():
        assert 1 <= len(stored_room["name"]) <= 100 and stored_room["name"] == stored_room["name"].strip()
