"""The last messages of recently read rooms, JSON-encoded once.

Most history requests ask for a room's latest page (the page loads it on
every join). Those are answered from memory: each room keeps its last
RECENT_PER_ROOM messages as encoded JSON items, filled from SQLite on the
room's first request and kept up to date as messages are committed. The
whole cache is bounded in bytes (HISTORY_CACHE_BYTES), not in rooms: a
message may be 24 KB once its control characters are escaped, so a bound
in rooms alone would let a few clients fill gigabytes. The least recently
read rooms go first.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from aiohttp import web

from .db import Database
from .frames import Stored, to_json

RECENT_PER_ROOM = 100
# What a cached room and each of its items cost besides the items' bytes (the objects around
# them, measured roughly): counted so that many small rooms are bounded as well as a few big ones.
ROOM_OVERHEAD_BYTES = 1000
ITEM_OVERHEAD_BYTES = 50


class CachedRoom:
    """One room's last messages and the bytes they take."""

    __slots__ = ("items", "size")

    def __init__(self, items: list[bytes]) -> None:
        self.items = deque(items[-RECENT_PER_ROOM:])
        self.size = ROOM_OVERHEAD_BYTES + sum(len(item) + ITEM_OVERHEAD_BYTES for item in self.items)

    def append(self, item: bytes) -> int:
        """Add a message's item, dropping the oldest beyond RECENT_PER_ROOM; the change in size."""
        self.items.append(item)
        change = len(item) + ITEM_OVERHEAD_BYTES
        if len(self.items) > RECENT_PER_ROOM:
            change -= len(self.items.popleft()) + ITEM_OVERHEAD_BYTES
        self.size += change
        return change


class RecentHistory:
    """Per room, the last messages as JSON items, in seq order; at most `max_bytes` in all (0: no cache)."""

    def __init__(self, db: Database, max_bytes: int) -> None:
        self.db = db
        self.max_bytes = max_bytes
        self.size = 0
        self.rooms: OrderedDict[str, CachedRoom] = OrderedDict()
        # Messages committed while a room is being loaded, to add to what the load read.
        self.loading: dict[str, list[Stored]] = {}

    def committed(self, message: Stored) -> None:
        """To be told, in seq order, of every message the store has committed."""
        room = self.rooms.get(message.room_id)
        if room is not None:
            self.size += room.append(message.item)
            self._shrink()
        elif message.room_id in self.loading:
            self.loading[message.room_id].append(message)

    async def page(self, room_id: str, limit: int) -> bytes | None:
        """The room's last `limit` (at most RECENT_PER_ROOM) messages as a JSON array; None for no such room."""
        room = self.rooms.get(room_id)
        if room is None:
            room = await self._load(room_id)
            if room is None:
                return None
        else:
            self.rooms.move_to_end(room_id)
        items = room.items
        if limit < len(items):
            items = list(items)[-limit:]
        return b"[" + b",".join(items) + b"]"

    async def _load(self, room_id: str) -> CachedRoom | None:
        if await self.db.room_name(room_id) is None:
            return None
        # Only the first of several simultaneous loads of a room fills the cache; the others just read.
        first = room_id not in self.loading and bool(self.max_bytes)
        if first:
            self.loading[room_id] = []
        try:
            if first:  # told of the room's messages from here on (by a store that processes share, too)
                await self.db.follow(room_id)
            try:
                stored = await self.db.messages(room_id, RECENT_PER_ROOM)
            except BaseException:
                if first:
                    self.db.unfollow(room_id)
                raise
        finally:
            arrived = self.loading.pop(room_id) if first else []
        last = stored[-1]["seq"] if stored else 0
        room = CachedRoom([to_json(message).encode() for message in stored]
                          + [message.item for message in arrived if message.seq > last])
        if first:
            self.rooms[room_id] = room
            self.size += room.size
            self._shrink()
        return room

    def _shrink(self) -> None:
        """Drop the least recently read rooms until the cache fits its bound."""
        while self.size > self.max_bytes and self.rooms:
            evicted, room = self.rooms.popitem(last=False)
            self.size -= room.size
            self.db.unfollow(evicted)


history_key = web.AppKey("chat.history", RecentHistory)
