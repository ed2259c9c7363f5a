"""The doctor's check of two processes of one deployment: do they share rooms, and promptly?

A room and two users are created through the first process; one user's socket
is opened on the first process and the other's on the second, and messages
sent on the second socket must reach the first. A room the second process
does not know means the two use different databases. Processes on one
PostgreSQL wake each other with LISTEN/NOTIFY; without notifications a
process finds a message by its one-second poll, which the timing shows.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
from dataclasses import dataclass, field

import aiohttp

from _checks import Bases, HttpAnswer, SocketOutcome, http_call, open_socket, socket_url

# Probes sent 0.2 s apart cover every phase of a one-second poll, so without
# notifications their median delivery is at least 0.4 s; with them, tens of ms.
PROBES = 5
PROBE_SPACING_SECONDS = 0.2
SLOW_MEDIAN_SECONDS = 0.3


@dataclass
class Delivery:
    """How the probes went: `problem` names the step that failed, if one did."""

    problem: str = ""  # "setup", "first socket", "second socket", "lost", or ""
    detail: str = ""
    refusal: SocketOutcome | None = None  # the second socket's, when it was refused
    seconds: list[float] = field(default_factory=list)  # each delivered probe's time, send to arrival
    room: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def slow(self) -> bool:
        return self.median > SLOW_MEDIAN_SECONDS


async def measure_delivery(session: aiohttp.ClientSession, first: Bases, second: Bases,
                           wait_seconds: float) -> Delivery:
    nonce = secrets.token_hex(4)
    made = await _room_with_two_members(session, first.api, nonce)
    if isinstance(made, str):
        return Delivery("setup", made)
    room_id, listener, sender = made
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    try:
        opened = await open_socket(session, _member_socket(first, room_id, listener), origin=None,
                                   wait_seconds=wait_seconds)
        if opened.ws is None or opened.kind != "open":
            return Delivery("first socket", opened.describe(), room=room_id)
        sockets.append(opened.ws)
        other = await open_socket(session, _member_socket(second, room_id, sender), origin=None,
                                  wait_seconds=wait_seconds)
        if other.ws is None or other.kind != "open":
            return Delivery("second socket", other.describe(), refusal=other, room=room_id)
        sockets.append(other.ws)
        seconds = await _time_probes(opened.ws, other.ws, nonce, wait_seconds)
        if len(seconds) < PROBES:
            return Delivery("lost", f"{PROBES - len(seconds)} of {PROBES} messages did not arrive within "
                            f"{wait_seconds:g} s", seconds=seconds, room=room_id)
        return Delivery(seconds=seconds, room=room_id)
    finally:
        for ws in sockets:
            await ws.close()


async def _room_with_two_members(session: aiohttp.ClientSession, api: str,
                                 nonce: str) -> tuple[str, dict, dict] | str:
    """A new room with two new members, or why it could not be made."""
    async def post(path: str, body: dict) -> HttpAnswer:
        return await http_call(session, "POST", api + path, json_body=body)

    room = await post("/rooms", {"name": f"doctor check {nonce}"})
    if room.status != 200 or not isinstance(room.body, dict):
        return f"POST /rooms {room.describe()}"
    users = []
    for role in ("listener", "sender"):
        user = await post("/users", {"username": f"doctor-{role}-{nonce}"})
        if user.status != 200 or not isinstance(user.body, dict):
            return f"POST /users {user.describe()}"
        body = {"user_id": user.body["id"], **({"token": user.body["token"]} if user.body.get("token") else {})}
        joined = await post(f"/rooms/{room.body['id']}/join", body)
        if joined.status != 200:
            return f"POST /rooms/{room.body['id']}/join {joined.describe()}"
        users.append(user.body)
    return room.body["id"], users[0], users[1]


def _member_socket(bases: Bases, room_id: str, user: dict) -> str:
    return socket_url(bases.ws, room_id, user["id"], {"token": user["token"]} if user.get("token") else {})


async def _time_probes(listener: aiohttp.ClientWebSocketResponse, sender: aiohttp.ClientWebSocketResponse,
                       nonce: str, wait_seconds: float) -> list[float]:
    """Seconds from sending each probe on `sender` to its arrival on `listener`, for those that arrived."""
    loop = asyncio.get_running_loop()
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}

    async def listen() -> None:
        async for msg in listener:
            frame = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else None
            if isinstance(frame, dict) and frame.get("type") == "message" and frame.get("content") in sent:
                arrived[frame["content"]] = loop.time()
                if len(arrived) == PROBES:
                    return

    async def send() -> None:
        for number in range(PROBES):
            content = f"doctor probe {nonce} #{number + 1}"
            sent[content] = loop.time()
            await sender.send_str(json.dumps({"content": content}))
            await asyncio.sleep(PROBE_SPACING_SECONDS)

    listening = asyncio.create_task(listen())
    await send()
    try:
        await asyncio.wait_for(listening, wait_seconds)
    except asyncio.TimeoutError:
        pass
    return [arrived[content] - sent[content] for content in sent if content in arrived]
