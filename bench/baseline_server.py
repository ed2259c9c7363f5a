"""The bare in-memory aiohttp broadcast server that every run is compared with.

It speaks the subset of API.md that the benchmark uses, as a careful aiohttp
user would write it: plain dicts, each frame encoded once per message and
`await ws.send_str(text)` to each socket of the room in turn. With `--naive`
it is the first baseline of issue 6 instead, `await ws.send_json(frame)` to
each socket, which encodes the frame again for every recipient; the benchmark
keeps it as a second reference. WebSocketResponse keeps its defaults (so no
heartbeat); the load generator does not offer permessage-deflate, so neither
server compresses. The only departures, for fairness: no access log (the
server under test runs with LOG_LEVEL=WARNING), and a /health route so that
start-up can be detected.
"""

import argparse
import itertools
import json
import secrets
import uuid
from datetime import datetime, timezone

from aiohttp import web


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class State:
    def __init__(self, naive: bool) -> None:
        self.naive = naive  # encode each frame again for every socket, as the first baseline did
        self.users: dict[str, dict] = {}
        self.rooms: dict[str, dict] = {}
        self.sockets: dict[str, set[web.WebSocketResponse]] = {}
        self.history: dict[str, list[dict]] = {}
        self.message_ids = itertools.count(1)


state_key = web.AppKey("state", State)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy", "timestamp": utc_now()})


async def name_from(request: web.Request, field: str) -> str:
    try:
        body = await request.json()
        value = body[field].strip()
    except (ValueError, KeyError, TypeError, AttributeError):
        raise web.HTTPUnprocessableEntity(text='{"detail": "bad body"}', content_type="application/json")
    if len(value) < 2:
        raise web.HTTPUnprocessableEntity(text='{"detail": "too short"}', content_type="application/json")
    return value


async def create_user(request: web.Request) -> web.Response:
    username = await name_from(request, "username")
    user = {"id": str(uuid.uuid4()), "username": username, "joined_at": utc_now()}
    request.app[state_key].users[user["id"]] = user
    return web.json_response({**user, "token": secrets.token_urlsafe(24)})


async def create_room(request: web.Request) -> web.Response:
    name = await name_from(request, "name")
    room = {"id": str(uuid.uuid4()), "name": name, "created_at": utc_now(), "users": []}
    state = request.app[state_key]
    state.rooms[room["id"]] = room
    state.history[room["id"]] = []
    return web.json_response(room)


async def join_room(request: web.Request) -> web.Response:
    state = request.app[state_key]
    room = state.rooms.get(request.match_info["room_id"])
    if room is None:
        raise web.HTTPNotFound(text='{"detail": "Room not found"}', content_type="application/json")
    body = await request.json()
    user = state.users.get(body.get("user_id"))
    if user is None:
        raise web.HTTPNotFound(text='{"detail": "User not found"}', content_type="application/json")
    if user["id"] not in room["users"]:
        room["users"].append(user["id"])
    return web.json_response({"message": f"User {user['username']} joined room {room['name']}"})


async def recent_messages(request: web.Request) -> web.Response:
    history = request.app[state_key].history.get(request.match_info["room_id"])
    if history is None:
        raise web.HTTPNotFound(text='{"detail": "Room not found"}', content_type="application/json")
    limit = int(request.query.get("limit", "50"))
    return web.json_response(history[-limit:])


async def broadcast(state: State, room_id: str, frame: dict) -> None:
    text = None if state.naive else json.dumps(frame)
    for ws in list(state.sockets.get(room_id, ())):
        try:
            if text is None:
                await ws.send_json(frame)
            else:
                await ws.send_str(text)
        except ConnectionError:
            pass


async def websocket(request: web.Request) -> web.WebSocketResponse:
    state = request.app[state_key]
    room_id, user_id = request.match_info["room_id"], request.match_info["user_id"]
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    room, user = state.rooms.get(room_id), state.users.get(user_id)
    if room is None or user is None:
        await ws.close(code=4004, message=b"Room not found" if room is None else b"User not found")
        return ws
    if user_id not in room["users"]:
        room["users"].append(user_id)
    state.sockets.setdefault(room_id, set()).add(ws)
    username = user["username"]
    try:
        await broadcast(state, room_id, {"type": "user_joined", "user_id": user_id, "username": username,
                                         "message": f"{username} joined the chat", "timestamp": utc_now()})
        async for msg in ws:
            if msg.type != web.WSMsgType.TEXT:
                continue
            try:
                content = msg.json()["content"].strip()
            except (ValueError, KeyError, TypeError, AttributeError):
                await ws.send_json({"type": "error", "message": "Invalid message"})
                continue
            history = state.history[room_id]
            message = {"id": next(state.message_ids), "seq": len(history) + 1, "room_id": room_id,
                       "user_id": user_id, "username": username, "content": content, "timestamp": utc_now()}
            history.append(message)
            await broadcast(state, room_id, {"type": "message", **message})
    finally:
        state.sockets[room_id].discard(ws)
        await broadcast(state, room_id, {"type": "user_left", "user_id": user_id, "username": username,
                                         "message": f"{username} left the chat", "timestamp": utc_now()})
    return ws


def create_app(naive: bool = False) -> web.Application:
    app = web.Application()
    app[state_key] = State(naive)
    app.router.add_get("/health", health)
    app.router.add_post("/users", create_user)
    app.router.add_post("/rooms", create_room)
    app.router.add_post("/rooms/{room_id}/join", join_room)
    app.router.add_get("/rooms/{room_id}/messages", recent_messages)
    app.router.add_get("/ws/{room_id}/{user_id}", websocket)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--naive", action="store_true", help="encode each frame again for every socket (send_json)")
    args = parser.parse_args()
    web.run_app(create_app(args.naive), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
