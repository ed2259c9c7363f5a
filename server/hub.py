"""Fan-out: the open sockets of each room and delivery of frames to them.

The hub is the only code that writes to more than one socket. A frame is
queued on each socket's outbox and all outboxes are written once per event
loop iteration, so a socket owed several frames gets them in one write, and
no socket is ever awaited: a client that stops reading only fills its own
transport buffer, and is closed with 1008 when that passes SEND_QUEUE_LIMIT.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from aiohttp import web

from .limits import TokenBucket

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 3.0  # seconds a closing handshake may take before the connection is dropped
PING_FRAME = b"\x89\x00"  # FIN + opcode 9 (ping), no payload
GOING_AWAY = 1001
ABNORMAL_CLOSURE = 1006
POLICY_VIOLATION = 1008


class TooManyConnections(Exception):
    """The user or address already holds as many sockets as it may."""


class ShuttingDown(Exception):
    """The server is closing; no new sockets join."""


class Peer:
    """One open socket in a room and what is waiting to be written to it."""

    __slots__ = ("ws", "transport", "room_id", "user_id", "username", "address",
                 "bucket", "outbox", "held", "held_bytes", "replayed_through", "close_code", "alive")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, room_id: str, user_id: str,
                 username: str, address: str, bucket: TokenBucket | None) -> None:
        self.ws = ws
        self.transport = transport
        self.room_id = room_id
        self.user_id = user_id
        self.username = username
        self.address = address
        self.bucket = bucket
        self.outbox: list[bytes] | None = None
        # While a reconnecting socket replays history, live frames wait here with their seq.
        self.held: list[tuple[int | None, bytes]] | None = None
        self.held_bytes = 0
        self.replayed_through: int | None = None
        self.close_code: int | None = None  # set when the server closes the socket itself
        self.alive = True  # heard from since the last heartbeat (any frame counts, a pong too)


class Hub:
    """The rooms' open sockets; publishes frames to a room and closes sockets."""

    def __init__(self, send_queue_limit: int, max_per_user: int, max_per_address: int,
                 heartbeat_seconds: float = 0) -> None:
        self.rooms: dict[str, set[Peer]] = {}
        self.heartbeat_seconds = heartbeat_seconds
        self._heartbeat: asyncio.TimerHandle | None = None
        self.send_queue_limit = send_queue_limit
        self.max_per_user = max_per_user
        self.max_per_address = max_per_address
        self.per_user: Counter[str] = Counter()
        self.per_address: Counter[str] = Counter()
        self.connections = 0
        self.frames_delivered = 0
        self.slow_consumer_drops = 0
        self.closing = False
        self._unflushed: list[Peer] = []
        self._closers: set[asyncio.Task[None]] = set()

    def check_capacity(self, user_id: str, address: str) -> None:
        """Raise ShuttingDown or TooManyConnections if one more socket of this user and address may not join."""
        if self.closing:
            raise ShuttingDown
        if 0 < self.max_per_user <= self.per_user[user_id] or \
                0 < self.max_per_address <= self.per_address[address]:
            raise TooManyConnections

    def enter(self, peer: Peer, joined_frame: bytes) -> None:
        """Add the socket to its room and announce it; its own `joined_frame` is its first frame."""
        self.check_capacity(peer.user_id, peer.address)
        self.publish(peer.room_id, joined_frame)
        self.rooms.setdefault(peer.room_id, set()).add(peer)
        self.per_user[peer.user_id] += 1
        self.per_address[peer.address] += 1
        self.connections += 1
        self.send(peer, joined_frame)

    def leave(self, peer: Peer) -> bool:
        """Take the socket out of its room; False if it was not there (any more)."""
        room = self.rooms.get(peer.room_id)
        if room is None or peer not in room:
            return False
        room.discard(peer)
        if not room:
            del self.rooms[peer.room_id]
        _decrement(self.per_user, peer.user_id)
        _decrement(self.per_address, peer.address)
        self.connections -= 1
        return True

    def publish(self, room_id: str, frame: bytes, seq: int | None = None) -> None:
        """Deliver an encoded frame to every socket of the room (this process's share of it)."""
        room = self.rooms.get(room_id)
        if not room:
            return
        for peer in room:
            if peer.held is None:
                self.send(peer, frame)
            else:
                self._deliver_after_replay(peer, frame, seq)

    def send(self, peer: Peer, frame: bytes) -> None:
        """Queue a frame for one socket; it is written with the others at the end of this loop iteration."""
        if peer.outbox is None:
            peer.outbox = [frame]
            if not self._unflushed:
                asyncio.get_running_loop().call_soon(self.flush_all)
            self._unflushed.append(peer)
        else:
            peer.outbox.append(frame)

    def hold(self, peer: Peer) -> None:
        """Keep live frames back while the socket replays what it missed."""
        peer.held = []
        peer.held_bytes = 0
        peer.replayed_through = None

    def release(self, peer: Peer, replayed_through: int) -> None:
        """End the replay: send the held frames, skipping messages the replay already sent."""
        held, peer.held = peer.held or [], []
        peer.replayed_through = replayed_through
        for seq, frame in held:
            if peer.held is None:
                self.send(peer, frame)
            else:
                self._deliver_after_replay(peer, frame, seq)

    def _deliver_after_replay(self, peer: Peer, frame: bytes, seq: int | None) -> None:
        if peer.replayed_through is None:  # the replay is still running
            peer.held.append((seq, frame))
            peer.held_bytes += len(frame)
            # A socket that does not read stalls its replay, and what waits for it is bounded like any
            # queue; but only while its replay is held up by the socket itself (unsent bytes), not by
            # the first page still being read. Dropped soon, not now: publish() iterates over the room.
            if 0 < self.send_queue_limit < peer.held_bytes and peer.transport.get_write_buffer_size():
                asyncio.get_running_loop().call_soon(self._drop_slow, peer)
        elif seq is None:
            self.send(peer, frame)
        elif seq > peer.replayed_through:
            # Caught up. A message can be committed (and replayed) before it is published,
            # so older seqs may arrive until now; as a room's messages are published in
            # seq order, none can follow this one.
            peer.held = peer.replayed_through = None
            self.send(peer, frame)

    def flush(self, peer: Peer) -> None:
        """Write the socket's queued frames now."""
        frames, peer.outbox = peer.outbox, None
        if not frames:
            return
        transport = peer.transport
        if peer.ws.closed or transport.is_closing():
            return  # a close frame has gone out; nothing may follow it
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        self.frames_delivered += len(frames)
        if self.send_queue_limit and transport.get_write_buffer_size() > self.send_queue_limit:
            self._drop_slow(peer)

    def flush_all(self) -> None:
        """Write every socket's queued frames now, rather than in the event loop's next pass."""
        unflushed, self._unflushed = self._unflushed, []
        for peer in unflushed:
            self.flush(peer)

    def _drop_slow(self, peer: Peer) -> None:
        if not self.leave(peer):
            return
        self.slow_consumer_drops += 1
        log.warning("Closing slow consumer: user %s in room %s has %d bytes unsent",
                    peer.user_id, peer.room_id, peer.transport.get_write_buffer_size() + peer.held_bytes)
        self.close_soon(peer, POLICY_VIOLATION, "Too slow to keep up")

    def close_soon(self, peer: Peer, code: int, reason: str) -> None:
        """Close a socket from outside its handler, without waiting for it."""
        task = asyncio.create_task(self.close(peer, code, reason))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def close(self, peer: Peer, code: int, reason: str) -> None:
        """Close a socket with a code and reason; drop the connection if the peer does not answer in time."""
        peer.close_code = code
        self.flush(peer)  # what the socket is owed goes out before the close frame
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await peer.ws.close(code=code, message=reason.encode())
        except TimeoutError:
            # The peer does not read: drop the connection and whatever it was still owed.
            peer.transport.abort()

    def start_heartbeat(self) -> None:
        """Ping every socket each HEARTBEAT_SECONDS; drop those that said nothing since the last ping.

        One timer for the whole hub instead of aiohttp's per socket: a timer
        handle per idle socket is memory, and resetting it on every frame is work.
        """
        if self.heartbeat_seconds:
            self._heartbeat = asyncio.get_running_loop().call_later(self.heartbeat_seconds, self._beat)

    def _beat(self) -> None:
        peers = [peer for room in self.rooms.values() for peer in room]
        for peer in peers:
            if peer.alive:
                peer.alive = False
                self.send(peer, PING_FRAME)
            elif self.leave(peer):
                log.warning("Dropping unresponsive peer: user %s in room %s did not answer a ping within %gs",
                            peer.user_id, peer.room_id, self.heartbeat_seconds)
                peer.close_code = ABNORMAL_CLOSURE
                peer.transport.abort()  # a dead peer cannot read a close frame
        self.start_heartbeat()

    async def close_all(self) -> None:
        """Graceful shutdown: close every socket with 1001 and refuse new ones."""
        self.closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        peers = [peer for room in self.rooms.values() for peer in room]
        if peers:
            log.info("Closing %d sockets for shutdown", len(peers))
        await asyncio.gather(*(self.close(peer, GOING_AWAY, "Server shutting down") for peer in peers))
        if self._closers:
            await asyncio.wait(self._closers)

    def socket_counts(self) -> dict[str, int]:
        """Rooms with a socket here, users with one, and sockets."""
        return {"active_rooms": len(self.rooms), "active_users": len(self.per_user), "connections": self.connections}

    def presence(self, room_id: str) -> list[dict[str, Any]]:
        """Who has a socket in the room now, with how many."""
        users: dict[str, dict[str, Any]] = {}
        for peer in self.rooms.get(room_id, ()):
            entry = users.setdefault(peer.user_id, {"user_id": peer.user_id, "username": peer.username,
                                                    "connections": 0})
            entry["connections"] += 1
        return sorted(users.values(), key=lambda entry: (entry["username"], entry["user_id"]))


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


hub_key = web.AppKey("chat.hub", Hub)
