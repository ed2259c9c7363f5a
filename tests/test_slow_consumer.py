"""Clients that stop reading or vanish: the rest of the room must not notice.

The slow consumer runs against a real server process, so that its memory can
be read from /proc while a room chats past a client that reads nothing.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType

from helpers import TIMEOUT, connect, create_room, create_user, own_origin, receive
from raw_ws import CLOSE, TEXT, RawSocket, close_code, server_frames

SEND_QUEUE_LIMIT = 64 * 1024
MESSAGES = 2400
CONTENT_CHARS = 16000  # a 16 KB message: the room sends the slow client about 37 MB in all
WINDOW = 16  # messages the sender may have in flight before it waits for its own echo
HISTORY = 400  # 6.4 MB: more than the kernel buffers between server and client hold, so a replay stalls
MiB = 1024 * 1024


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (the peak) of a process, in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


async def post(session: aiohttp.ClientSession, path: str, body: dict[str, str]) -> dict[str, str]:
    async with session.post(path, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def presence(session: aiohttp.ClientSession, room_id: str) -> set[str]:
    async with session.get(f"/rooms/{room_id}/presence") as resp:
        return {entry["user_id"] for entry in await resp.json()}


@pytest.mark.parametrize("since", [None, "0"], ids=["live", "replaying"])
async def test_a_client_that_never_reads_is_closed_and_slows_no_one(start_server, since):
    """With since=0 the slow client first stalls its own replay of the history, while the room chats on."""
    server = start_server(SEND_QUEUE_LIMIT=str(SEND_QUEUE_LIMIT), RATE_LIMIT_PER_SECOND="0",
                          MAX_MESSAGE_LENGTH=str(CONTENT_CHARS + 100))
    async with aiohttp.ClientSession(server.url) as session:
        room = await post(session, "/rooms", {"name": "busy"})
        alice, bob, slow = [await post(session, "/users", {"username": name}) for name in ("alice", "bob", "slow")]
        sender = await session.ws_connect(f"/ws/{room['id']}/{alice['id']}")
        reader = await session.ws_connect(f"/ws/{room['id']}/{bob['id']}")
        for ws in (sender, reader, sender):  # the sender also sees bob join
            assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "user_joined"
        sent_at: dict[int, float] = {}
        padding = "x" * CONTENT_CHARS

        async def chat(first: int, count: int) -> None:
            """alice sends `count` messages, never more than WINDOW ahead of what came back to her."""
            echoed = first
            for n in range(first, first + count):
                sent_at[n] = time.perf_counter()
                await sender.send_str(json.dumps({"content": f"{n} {padding}"}))
                while n - echoed >= WINDOW:
                    frame = await sender.receive_json(timeout=TIMEOUT)
                    if frame["type"] == "message":
                        echoed = int(frame["content"].split()[0])
            while echoed < first + count - 1:
                frame = await sender.receive_json(timeout=TIMEOUT)
                if frame["type"] == "message":
                    echoed = int(frame["content"].split()[0])

        latencies: list[float] = []
        slow_left_after: list[int] = []

        async def read(count: int) -> None:
            """bob reads every message as it comes and notes how long it took to reach him."""
            while len(latencies) < count:
                frame = await reader.receive_json(timeout=TIMEOUT)
                if frame["type"] == "message":
                    latencies.append(time.perf_counter() - sent_at[int(frame["content"].split()[0])])
                elif frame["type"] == "user_left":
                    assert frame["user_id"] == slow["id"]
                    slow_left_after.append(len(latencies))

        # History, which also warms up (allocator, SQLite cache): what grows later is the slow client's share.
        await asyncio.gather(chat(0, HISTORY), read(HISTORY))
        latencies.clear()
        before = memory_kib(server.process.pid)

        query = f"?since={since}" if since is not None else ""
        raw = await RawSocket.connect("127.0.0.1", server.port, f"/ws/{room['id']}/{slow['id']}{query}",
                                      receive_buffer=4096)
        for ws in (sender, reader):
            assert (await ws.receive_json(timeout=TIMEOUT))["type"] == "user_joined"
        started = time.perf_counter()
        chatting = asyncio.gather(chat(HISTORY, MESSAGES), read(MESSAGES))

        dropped_after = None
        while not chatting.done():
            await asyncio.sleep(0.05)
            if dropped_after is None and slow["id"] not in await presence(session, room["id"]):
                dropped_after = len(latencies)
                # A client that reads again soon enough finds, after what it was sent, the close frame.
                data, _ = await raw.read_until_closed(timeout=2.0)
                frames, _ = server_frames(data)
        await chatting
        elapsed = time.perf_counter() - started
        after = memory_kib(server.process.pid)
        raw.close()
        while not slow_left_after:
            frame = await reader.receive_json(timeout=TIMEOUT)
            assert (frame["type"], frame["user_id"]) == ("user_left", slow["id"])
            slow_left_after.append(len(latencies))
        for ws in (sender, reader):
            await ws.close()

    assert dropped_after is not None, "the slow client was never closed"
    opcodes = [opcode for opcode, _ in frames]
    assert CLOSE in opcodes, f"no close frame among {len(frames)} frames"
    assert close_code(frames[opcodes.index(CLOSE)][1]) == (1008, "Too slow to keep up")
    texts = [json.loads(payload) for opcode, payload in frames[:opcodes.index(CLOSE)] if opcode == TEXT]
    seqs = [frame["seq"] for frame in texts if frame["type"] == "message"]
    first = 1 if since == "0" else HISTORY + 1
    assert seqs == list(range(first, first + len(seqs))), "what the slow client got is a clean prefix"

    owed_mib = MESSAGES * CONTENT_CHARS / MiB
    growth_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
    print(f"\nslow consumer dropped after {dropped_after} of {MESSAGES} messages; it had received "
          f"{len(seqs)} before its close frame; bob's latency median {statistics.median(latencies) * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms; {MESSAGES} messages in {elapsed:.1f} s; "
          f"server peak memory +{growth_mib:.1f} MiB while owing the slow client {owed_mib:.0f} MiB")
    assert len(latencies) == MESSAGES
    assert statistics.median(latencies) < 0.1 and max(latencies) < 1.0
    assert slow_left_after, "bob was never told that the slow client left"
    # What the server holds for it is bounded (a replay page, the queue limit), not what it is owed.
    assert growth_mib < owed_mib / 3
    assert "Traceback" not in server.log_text()  # a routine drop, not a crash


async def test_a_peer_that_stops_answering_pings_is_dropped_and_the_room_told(make_client):
    client = await make_client(heartbeat_seconds=0.5)
    alice, ghost = await create_user(client, "alice"), await create_user(client, "ghost")
    room = await create_room(client)
    ws_alice = await connect(client, room["id"], alice["id"])
    # A client gone without a goodbye (a laptop lid closed, a train tunnel): it never answers a ping.
    ws_ghost = await client.ws_connect(f"/ws/{room['id']}/{ghost['id']}", autoping=False)
    assert (await receive(ws_ghost))["type"] == "user_joined"
    assert (await receive(ws_alice))["type"] == "user_joined"
    started = time.monotonic()
    left = await receive(ws_alice, timeout=3.0)  # alice's client answers pings as it reads
    waited = time.monotonic() - started
    assert (left["type"], left["user_id"]) == ("user_left", ghost["id"])
    assert 0.5 <= waited < 2.0, waited
    assert (await (await client.get(f"/rooms/{room['id']}/presence")).json()) == [
        {"user_id": alice["id"], "username": "alice", "connections": 1}]
    # alice, whose client answers pings while it waits for frames, outlives several more heartbeats.
    # (Not receive(timeout=...): each ping answered inside receive() starts that timeout again.)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.6):
            await ws_alice.receive()
    await ws_alice.send_json({"content": "anyone?"})
    assert (await receive(ws_alice))["content"] == "anyone?"
    kinds = []
    for _ in range(10):  # the pings it ignored, then the end of the connection
        msg = await ws_ghost.receive(timeout=TIMEOUT)
        kinds.append(msg.type)
        if msg.type is not WSMsgType.PING:
            break
    assert kinds[-1] in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR), kinds
    for ws in (ws_alice, ws_ghost):
        await ws.close()


async def test_a_refused_client_that_never_answers_the_close_is_dropped_in_3_seconds(client):
    """aiohttp would wait 10 s for the close handshake; during a shutdown that is longer than the stop may take."""
    raw = await RawSocket.connect("127.0.0.1", client.port, "/ws/nowhere/nobody",
                                  extra_headers=f"Origin: {own_origin(client)}\r\n".encode())
    started = time.monotonic()
    data, closed = await raw.read_until_closed(timeout=6.0)  # reads, but never sends its own close frame
    raw.close()
    assert closed and 2.5 < time.monotonic() - started < 4.5
    frames, _ = server_frames(data)
    assert [close_code(payload) for opcode, payload in frames if opcode == CLOSE] == [(4004, "Room not found")]
