"""The chat socket, /ws/{room_id}/{user_id}: admission, replay, and the receive loop.

A socket that may not stay is refused in the way its client can read. A
browser (its handshake carries an Origin) cannot read an HTTP answer to a
handshake, only a failed upgrade it reports as 1006: it is let in first and
then closed with the code and reason (4004, 4001, 4003, 1008, ...). Any other
client (a script, a native app) is admitted before the upgrade, and a refusal
is an HTTP answer with the code in its JSON body, as the old app's scripts
expect. Refusals after the socket is open are closes for everyone.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from . import frames
from .auth import Unauthorized, check_user_token, create_user_or_check, presented_token
from .config import Config, config_key
from .db import MAX_SEQ, MAX_USERNAME, MIN_USERNAME, Database, StoreUnavailable, acceptable_id, db_key, storable
from .hub import CLOSE_TIMEOUT, Hub, Peer, ShuttingDown, TooManyConnections, hub_key
from .limits import TokenBucket, creation_limit_key, too_many_creations
from .metrics import Metrics, metrics_key
from .origins import origin_policy_key
from .request_info import client_address

log = logging.getLogger(__name__)

INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
REPLAY_PAGE = 200
# Over-limit messages in a row after which a flooding socket is closed.
FLOOD_STRIKES = 10


# A refusal of a handshake that has not been upgraded: the HTTP status for each close code (API.md).
# 4003 and 1009 need an open socket or an Origin, so they are always closes.
HTTP_STATUS_OF_CLOSE_CODE = {4004: 404, 4001: 401, 1008: 429, 1001: 503, TRY_AGAIN_LATER: 503, INTERNAL_ERROR: 500}


class Refused(Exception):
    """The socket may not stay: closed with this code and reason, or, before the upgrade, answered over HTTP."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def http_response(self) -> web.Response:
        body = {"detail": self.reason, "close_code": self.code}
        return web.json_response(body, status=HTTP_STATUS_OF_CLOSE_CODE[self.code], dumps=frames.to_json)


class BadFrame(Exception):
    """A client frame that is not a chat message; the text goes back in an error frame."""


class ChatSocket(web.WebSocketResponse):
    """aiohttp closes an oversized frame with 1009 and no reason; this one names it."""

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        if code == 1009 and not message:
            message = b"Message too big"
        return await super().close(code=code, message=message, drain=drain)


async def chat_socket(request: web.Request) -> web.StreamResponse:
    config = request.app[config_key]
    # aiohttp refuses a message of exactly max_msg_size bytes; MAX_FRAME_BYTES is the largest one allowed.
    max_msg_size = config.max_frame_bytes + 1 if config.max_frame_bytes else 0
    # The hub pings all sockets from one timer (hub.start_heartbeat), so pongs come to the receive loop.
    # A peer gets CLOSE_TIMEOUT to answer a close frame, like a slow consumer, rather than aiohttp's 10 s:
    # a client that never answers must not hold up a refusal, or a shutdown, for long.
    # writer_limit=0: send_frame waits whenever the transport is over its limit (aiohttp's default
    # waits only every 256 KiB), which is what keeps a stalled replay's memory to one buffer.
    ws = ChatSocket(compress=False, max_msg_size=max_msg_size, autoping=False, timeout=CLOSE_TIMEOUT,
                    writer_limit=0)
    if not ws.can_prepare(request).ok:
        # What a proxy without the upgrade lines turns a socket into: say so, not aiohttp's internals.
        detail = ("WebSocket upgrade expected: this URL is a socket, and a proxy in front "
                  "must forward the Upgrade and Connection headers")
        return web.json_response({"detail": detail}, status=400, dumps=frames.to_json)
    if "Origin" in request.headers:
        await ws.prepare(request)  # a browser: let it in, so that a refusal is a close it can read
    room_id, user_id = request.match_info["room_id"], request.match_info["user_id"]
    try:
        peer, token = await admit(request, ws, config, room_id, user_id)
        await ws.prepare(request)  # (a browser's socket is open already)
        replay_from = parse_since(request.query.get("since"))
        await join(request, peer, hold=replay_from is not None)
        # No coroutine of its own for the session: each awaiting frame is memory per idle socket.
        try:
            await catch_up(request, ws, config, peer, token, replay_from)
            await receive_messages(ws, request.app[hub_key], request.app[db_key], config, peer,
                                   request.app[metrics_key])
        except ConnectionResetError:
            pass  # gone, or dropped as too slow, in the middle of its replay
        finally:
            leave(request, ws, peer)
    except Refused as refusal:
        return await refuse(request, ws, refusal)
    except StoreUnavailable as exc:  # while admitting, joining or replaying: reads fail like writes
        return await refuse(request, ws, Refused(TRY_AGAIN_LATER, exc.close_reason))
    except Exception:
        log.exception("WebSocket for user %s in room %s failed", user_id, room_id)
        return await refuse(request, ws, Refused(INTERNAL_ERROR, "Internal error"))
    return ws


async def refuse(request: web.Request, ws: web.WebSocketResponse, refusal: Refused) -> web.StreamResponse:
    """Close an open socket with the refusal's code and reason; answer a handshake not yet upgraded over HTTP."""
    log.warning("WebSocket closed with code %d: %s", refusal.code, refusal.reason)
    request.app[metrics_key].socket_closes.labels(str(refusal.code)).inc()
    if not ws.prepared:
        return refusal.http_response()
    await ws.close(code=refusal.code, message=refusal.reason.encode())
    return ws


async def admit(request: web.Request, ws: web.WebSocketResponse, config: Config,
                room_id: str, user_id: str) -> tuple[Peer, str | None]:
    """Check origin, room, user and token, creating what the auto flags allow; the new Peer and its new token."""
    if not request.app[origin_policy_key].allows(request.headers.get("Origin"), request.host):
        raise Refused(4003, "Origin not allowed")
    db = request.app[db_key]
    room_name = await db.room_name(room_id)
    if room_name is None and not (config.allow_websocket_auto_rooms and acceptable_id(room_id)):
        raise Refused(4004, "Room not found")
    user = await db.get_user(user_id)
    username = request.query.get("username", "").strip()
    if user is None and not (config.allow_websocket_auto_users and len(username) >= MIN_USERNAME
                             and storable(username) and acceptable_id(user_id)):
        raise Refused(4004, "User not found")
    token = presented_token(request)
    address = client_address(request)
    try:
        if user is not None:
            await check_user_token(db, config.require_tokens, user_id, token)
        # Before anything is created: a socket over the limits must leave no room or user behind.
        # (enter() checks again, for sockets admitted meanwhile.)
        request.app[hub_key].check_capacity(user_id, address)
        retry_after = request.app[creation_limit_key].retry_after(address, (room_name is None) + (user is None))
        if retry_after is not None:
            raise Refused(1008, too_many_creations(retry_after))
        new_token = None
        # The user first: a socket that loses the race for its id and is refused leaves no room behind.
        if user is None:
            user, new_token = await create_user_or_check(db, config.require_tokens, user_id,
                                                         username[:MAX_USERNAME], token)
        if room_name is None:
            await db.create_room(f"Room {room_id[:8]}", room_id)
        await db.add_member(room_id, user_id)
    except Unauthorized:
        raise Refused(4001, "Unauthorized") from None
    except TooManyConnections:
        raise Refused(1008, "Too many connections") from None
    except ShuttingDown:
        raise Refused(1001, "Server shutting down") from None
    bucket = TokenBucket(config.rate_limit_per_second, config.rate_limit_burst) \
        if config.rate_limit_per_second else None
    peer = Peer(ws, request.transport, room_id, user_id, user["username"], address, bucket)
    return peer, new_token


async def join(request: web.Request, peer: Peer, hold: bool) -> None:
    """Enter the room's hub and announce it (a reconnecting socket holds live frames until it has caught up)."""
    hub, db = request.app[hub_key], request.app[db_key]
    await db.follow(peer.room_id)  # from now on the room's messages, wherever stored, are published here
    if hold:
        hub.hold(peer)
    joined = frames.user_joined(peer.user_id, peer.username)
    try:
        hub.enter(peer, joined)
    except (TooManyConnections, ShuttingDown) as refusal:
        db.unfollow(peer.room_id)
        if isinstance(refusal, ShuttingDown):
            raise Refused(1001, "Server shutting down") from None
        raise Refused(1008, "Too many connections") from None
    db.socket_opened(peer.room_id, peer.user_id, peer.username, joined)
    log.info("User %s connected to room %s", peer.user_id, peer.room_id)


async def catch_up(request: web.Request, ws: web.WebSocketResponse, config: Config, peer: Peer,
                   new_token: str | None, replay_from: int | None) -> None:
    """Send the new user's token, and replay what a reconnecting client missed (after seq `replay_from`)."""
    hub = request.app[hub_key]
    # Only the creator of an auto-created user learns its token, and only when tokens are checked.
    if new_token and config.require_tokens:
        hub.send(peer, frames.token(new_token))
    if "since" in request.query and replay_from is None:
        hub.send(peer, frames.error("since must be a whole number, 0 or more"))
    if replay_from is not None:
        await replay(ws, hub, request.app[db_key], peer, replay_from)


def leave(request: web.Request, ws: web.WebSocketResponse, peer: Peer) -> None:
    """Leave the room, tell the others, and log how the socket closed."""
    hub, db = request.app[hub_key], request.app[db_key]
    hub.leave(peer)
    left = frames.user_left(peer.user_id, peer.username)
    hub.publish(peer.room_id, left)
    db.socket_closed(peer.room_id, peer.user_id, peer.username, left)
    db.unfollow(peer.room_id)
    code = peer.close_code or ws.close_code
    request.app[metrics_key].socket_closes.labels(str(code)).inc()
    log.info("User %s disconnected from room %s with code %s", peer.user_id, peer.room_id, code)


async def replay(ws: web.WebSocketResponse, hub: Hub, db: Database, peer: Peer, after: int) -> None:
    """Send every message of the room after seq `after`, then the live frames held meanwhile.

    A replay keeps a page of messages only while the client takes them: when the socket's buffer
    is full, the rest of the page is let go and read again once the client has caught up. So a
    client that stops reading holds one socket buffer and one frame, however long the room.
    Only the handler's task may read the socket, so nothing is read meanwhile, pongs included:
    the client taking the replay's frames is what shows the heartbeat that it is alive.
    """
    hub.flush(peer)  # what is queued (user_joined, token) goes before the replay
    high_water = peer.transport.get_write_buffer_limits()[1]
    while True:
        page = await db.messages(peer.room_id, REPLAY_PAGE, after=after)
        waiting_frame = None
        for message in page:
            frame = frames.message_payload(message)
            after = message["seq"]
            if peer.transport.get_write_buffer_size() + len(frame) > high_water:
                waiting_frame = frame
                break
            await ws.send_frame(frame, WSMsgType.TEXT)  # the buffer has room: this does not wait
            peer.alive = True
        last_page = len(page) < REPLAY_PAGE
        del page
        if waiting_frame is not None:
            # Written past the buffer's limit, which makes send_frame wait for the client to read
            # (the socket's writer_limit is 0): the page is not held meanwhile.
            await ws.send_frame(waiting_frame, WSMsgType.TEXT)
            peer.alive = True
        elif last_page:
            break
    hub.release(peer, after)


async def receive_messages(ws: web.WebSocketResponse, hub: Hub, db: Database, config: Config, peer: Peer,
                           metrics: Metrics) -> None:
    strikes = 0
    async for msg in ws:
        peer.alive = True
        if msg.type is WSMsgType.PONG:
            continue
        if msg.type is WSMsgType.PING:
            await ws.pong(msg.data)
            continue
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            # An error: aiohttp has closed the socket already (1009 for an oversized frame).
            peer.close_code = getattr(msg.data, "code", None)
            break
        # Every frame spends from the bucket, not only good messages: junk costs a parse and an answer too.
        if peer.bucket is not None and not peer.bucket.take():
            strikes += 1
            if strikes >= FLOOD_STRIKES:
                hub.leave(peer)
                await hub.close(peer, 1008, "Rate limit exceeded")
                break
            hub.send(peer, frames.error("Rate limit exceeded: slow down"))
            continue
        strikes = 0
        if msg.type is WSMsgType.BINARY:
            hub.send(peer, frames.error("Binary frames are not supported; send JSON text"))
            continue
        try:
            content = parse_chat_message(msg.data, config.max_message_length)
        except BadFrame as bad:
            hub.send(peer, frames.error(str(bad)))
            continue
        try:
            await db.add_message(peer.room_id, peer.user_id, peer.username, content)
        except StoreUnavailable:
            hub.send(peer, frames.error("The message could not be stored; please send it again"))
            continue
        metrics.messages_stored.inc()


def parse_chat_message(text: str, max_length: int) -> str:
    """The content of a client's chat frame, or BadFrame saying what is wrong."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        raise BadFrame("Frames must be JSON objects like {\"content\": \"hello\"}") from None
    except RecursionError:
        # A frame of thousands of nested brackets fits the frame limit but not Python's stack.
        raise BadFrame("Frames must not be nested this deeply") from None
    if not isinstance(data, dict):
        raise BadFrame("Frames must be JSON objects like {\"content\": \"hello\"}")
    if data.get("type", "message") != "message":
        kind = str(data["type"])[:40]
        raise BadFrame(f"Unknown frame type: {kind if storable(kind) else ascii(kind)}")
    content = data.get("content")
    if not isinstance(content, str):
        raise BadFrame("content is required and must be a string")
    content = content.strip()
    if not content:
        raise BadFrame("content must not be empty")
    if max_length and len(content) > max_length:
        raise BadFrame(f"content is longer than {max_length} characters")
    if not storable(content):
        raise BadFrame("content must be valid Unicode text, without NUL characters")
    return content


def parse_since(value: str | None) -> int | None:
    return None if value is None else parse_whole_number(value)


def parse_whole_number(text: str) -> int | None:
    """The number written in ASCII digits, or None; one past SQLite's range counts as its largest."""
    # isdigit() alone lets "²" through, which int() refuses; and some thousands of digits are
    # too many for int(). A seq that big means "after everything" all the same.
    if not (text.isascii() and text.isdigit()):
        return None
    return MAX_SEQ if len(text) > len(str(MAX_SEQ)) else min(int(text), MAX_SEQ)

