"""The last messages of recently read rooms, JSON-encoded once.

Most history requests ask for a room's latest page (the page loads it on
every join). Those are answered from memory: each room keeps its last
RECENT_PER_ROOM messages as encoded JSON items, filled from SQLite on the
room's first request and kept up to date as messages are committed.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from aiohttp import web

from .db import Database
from .frames import to_json

RECENT_PER_ROOM = 100
RECENT_ROOMS = 1000  # rooms kept, least recently read dropped first: memory stays bounded


class RecentHistory:
    """Per room, the last messages as JSON items, in seq order."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.rooms: OrderedDict[str, deque[bytes]] = OrderedDict()
        # Messages committed while a room is being loaded (seq and item), to add to what the load read.
        self.loading: dict[str, list[tuple[int, bytes]]] = {}

    def committed(self, message: dict[str, Any], item: bytes) -> None:
        """To be told, in seq order, of every message the store has committed, with its JSON `item`."""
        room = self.rooms.get(message["room_id"])
        if room is not None:
            room.append(item)
        elif message["room_id"] in self.loading:
            self.loading[message["room_id"]].append((message["seq"], item))

    async def page(self, room_id: str, limit: int) -> bytes | None:
        """The room's last `limit` (at most RECENT_PER_ROOM) messages as a JSON array; None for no such room."""
        room = self.rooms.get(room_id)
        if room is None:
            room = await self._load(room_id)
            if room is None:
                return None
        else:
            self.rooms.move_to_end(room_id)
        items = list(room)[-limit:] if limit < len(room) else room
        return b"[" + b",".join(items) + b"]"

    async def _load(self, room_id: str) -> deque[bytes] | None:
        if await self.db.room_name(room_id) is None:
            return None
        # Only the first of several simultaneous loads of a room fills the cache; the others just read.
        first = room_id not in self.loading
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
        items = [to_json(message).encode() for message in stored] + [item for seq, item in arrived if seq > last]
        room = deque(items, maxlen=RECENT_PER_ROOM)
        if first:
            self.rooms[room_id] = room
            if len(self.rooms) > RECENT_ROOMS:
                evicted, _ = self.rooms.popitem(last=False)
                self.db.unfollow(evicted)
        return room


history_key = web.AppKey("chat.history", RecentHistory)
