"""The PostgreSQL store: the methods of server/db.py's Database, shared by any number of server processes.

Every process reads and writes one PostgreSQL database (through asyncpg).
Each process commits messages in groups; a group locks its rooms' rows and
gives each message the next seq of its room, so writers to one room, on any
process, commit in seq order and without gaps. The messages table is the log: each process reads the new messages of
the rooms it follows (those with a socket or a cached page here) by room and
seq. A commit's notification (LISTEN/NOTIFY) carries its messages when they
fit in a payload, so the other processes deliver them without reading them
back, but only when they are the room's next: anything else (a gap, messages
too big to carry) is read from the table, and a poll every POLL_SECONDS
catches up whatever a notification missed (a listener that was reconnecting,
notifications turned off), so delivery never depends on them.

The same goes for the other processes' sockets: join and leave notices travel
as notifications (at most once, like the page's own view of them), and who is
connected is a table each process keeps its share of.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from . import frames
from .clock import utc_now
from .config import PROCESS_NAME, redact
from .db import (
    MIGRATIONS_DIR, MessageNotStored, MigrationError, StoreUnavailable, hash_token, migration_files, storable,
)

log = logging.getLogger(__name__)

# A room's commit notices ("SEQ ROOM_ID", then the messages up to SEQ if they fit) go to one of
# MESSAGE_CHANNELS channels, picked by a hash of its id, and each process listens only to the channels
# of the rooms it follows: it is not woken by the messages of rooms it has no socket for (other rooms
# that share a channel it skips by the notice's room id).
MESSAGE_CHANNELS = 1024
NOTICE_LIMIT = 7900                 # bytes; PostgreSQL refuses a NOTIFY payload of 8000
EVENTS_CHANNEL = "chat_events"      # payload JSON: a join or leave notice for a room's sockets elsewhere
POLL_SECONDS = 1.0                  # how often followed rooms are checked for messages no notification announced
HEARTBEAT_SECONDS = 5.0             # how often a process says it is alive
PROCESS_TIMEOUT_SECONDS = 15.0      # a process silent this long is out of presence and /health
RECONNECT_SECONDS = (0.1, 5.0)      # the listener's backoff after losing its connection: first, longest
READ_PAGE = 500
MIGRATION_LOCK = 7_413_917_321      # the advisory lock that lets one process migrate at a time
CONNECT_TIMEOUT_SECONDS = 5.0
# How long a statement may take before its caller is told to try again (as SQLite's writes wait for a lock
# at most BUSY_TIMEOUT_SECONDS): a row locked by another program, or a database that stopped answering
# without closing its connections (a network partition, a stopped VM), would otherwise hold writes forever.
QUERY_TIMEOUT_SECONDS = 5.0
# How long a query may wait for one of the pool's connections (a burst of sockets joining queues here)
# before the client is told to try again.
POOL_WAIT_SECONDS = 10.0
POOL_SIZE = 10
# A database gone away, restarting, or out of disk, memory or connections: "try again", not a bug.
# So is one that refuses new connections (ALLOW_CONNECTIONS false, dropped, a password changed):
# the pool meets that when it replaces a connection, and /health must say unhealthy, not crash.
UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
               asyncpg.AdminShutdownError, asyncpg.InsufficientResourcesError, TimeoutError,
               asyncpg.ObjectNotInPrerequisiteStateError, asyncpg.InvalidCatalogNameError,
               asyncpg.InvalidAuthorizationSpecificationError)
UNAVAILABLE_DETAIL = "The database cannot be reached right now; try again"

SELECT_MESSAGES = """
    SELECT m.id, m.seq, m.room_id, m.user_id, u.username, m.content, m.timestamp
    FROM messages m JOIN users u ON u.id = m.user_id
    WHERE m.room_id = $1 {where} ORDER BY m.seq {order} LIMIT ${limit}
"""
# Messages are committed in groups (see _commit_groups), each group by one statement: one round trip,
# in a transaction of its own. A room's messages come as one text, their JSON items (with seq 0) a line
# each: the statement takes the columns out of them, and the room's notice carries the same lines.
# It locks the rooms' rows in id order, so groups on several processes never deadlock, and gives the
# nth message of a room in the group the room's last seq + n. The locked row is the latest version
# of the row, even if another group committed after this statement began, so seqs never repeat.
# Each room's notice is "LAST_SEQ ROOM_ID", then its lines if they fit in a notice (see _carries).
STORE_MESSAGES = """
    WITH locked AS (SELECT id, last_seq FROM rooms WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE),
    added AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::boolean[], $5::text[])
                            AS added (room_id, lines, count, carried, channel)),
    stored AS (
        INSERT INTO messages (room_id, seq, id, user_id, content, timestamp)
        SELECT added.room_id, locked.last_seq + line.nth, m.id, m.user_id, m.content, m.timestamp
        FROM added JOIN locked ON locked.id = added.room_id,
             string_to_table(added.lines, E'\\n') WITH ORDINALITY AS line (item, nth),
             json_to_record(line.item::json) AS m (id text, user_id text, content text, timestamp text))
    UPDATE rooms SET last_seq = locked.last_seq + added.count
    FROM locked JOIN added ON added.room_id = locked.id
    WHERE rooms.id = locked.id
    RETURNING rooms.id, rooms.last_seq,
              pg_notify(added.channel, rooms.last_seq || ' ' || rooms.id
                                       || CASE WHEN added.carried THEN E'\\n' || added.lines ELSE '' END)
"""
MAX_GROUP = 1000  # messages in one transaction at most
ALIVE = f"last_seen > now() - interval '{PROCESS_TIMEOUT_SECONDS:g} seconds'"


class PostgresStore:
    """The chat's store on PostgreSQL; see the module's docstring."""

    kind = "postgresql"

    def __init__(self, url: str, pool: asyncpg.Pool, notifications: bool) -> None:
        self._url = url
        self._pool = pool
        self._notifications = notifications
        self.process_id = str(uuid.uuid4())
        # Rooms followed here, with how many followers (sockets, the history cache), and the last seq delivered.
        self._followers: Counter[str] = Counter()
        self._delivered: dict[str, int] = {}
        # The listener's connection while it is up, the message channels it listens to, and how many
        # followed rooms each channel carries; _listener_lock keeps its LISTEN commands one at a time.
        self._listener: asyncpg.Connection | None = None
        self._channels: set[str] = set()
        self._channel_rooms: Counter[str] = Counter()
        self._listener_lock = asyncio.Lock()
        self._unlistening: set[asyncio.Task[None]] = set()
        self._reading: dict[str, asyncio.Task[None]] = {}
        self._read_again: set[str] = set()
        self._notices: list[str] = []  # notices read from the listener, to take in the next loop pass
        # This process's sockets per (room, user), as written to the presence table.
        self._here: Counter[tuple[str, str]] = Counter()
        self._names: dict[tuple[str, str], str] = {}
        self._events: asyncio.Queue[tuple[str, str, str, int, bytes]] = asyncio.Queue()
        self._presence_stale = True  # the table may not match _here: rewrite it at the next heartbeat
        self._reachable = True
        self._tasks: list[asyncio.Task[None]] = []
        # Messages waiting to be committed, and the task committing them (see _commit_groups).
        self._queued: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        # Told of the messages of followed rooms, in seq order, each once (see server/__init__.py).
        self.on_messages_committed: Callable[[list[frames.Stored]], None] | None = None
        # Told of a join or leave notice from a socket on another process: (room_id, frame).
        self.on_room_event: Callable[[str, bytes], None] | None = None

    @classmethod
    async def open(cls, url: str, notifications: bool = True) -> PostgresStore:
        """Connect, apply pending migrations (one process at a time), and start following."""
        options: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_SECONDS}
        if not notifications:
            # Notifications are off for a pooler in transaction mode (PgBouncer), which may run each
            # statement on another server connection: no statement may count on one prepared before.
            options["statement_cache_size"] = 0
        try:
            # Migrations run on a connection of their own, without the pool's QUERY_TIMEOUT_SECONDS:
            # they may take long, or wait for another process's (see migrate()).
            conn = await asyncpg.connect(url, **options)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE, command_timeout=QUERY_TIMEOUT_SECONDS,
                                             reset=_nothing_to_reset, **options)
        except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(f"cannot reach the database {redact(url)}: {exc}") from None
        store = cls(url, pool, notifications)
        await store._heartbeat()
        store._tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("pg-listen", store._listen()), ("pg-poll", store._poll()),
            ("pg-heartbeat", store._heartbeat_regularly()), ("pg-events", store._write_events()))]
        return store

    async def close(self) -> None:
        """Commit what is queued, stop following, leave presence, and close the connections."""
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        with contextlib.suppress(TimeoutError):  # the sockets closed at shutdown: tell the other processes
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await self._events.join()
        tasks = (*self._tasks, *self._reading.values(), *self._unlistening)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(*UNAVAILABLE, asyncpg.PostgresError):
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await self._pool.execute("DELETE FROM processes WHERE id = $1", self.process_id)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; a database that cannot be reached becomes StoreUnavailable."""
        try:
            async with self._pool.acquire(timeout=POOL_WAIT_SECONDS) as conn:
                try:
                    yield conn
                except TimeoutError:
                    # A statement past QUERY_TIMEOUT_SECONDS: the pool would wait as long again for its
                    # cancellation before taking the connection back; a new one is cheaper.
                    conn.terminate()
                    raise
        except UNAVAILABLE as exc:
            self._note_reachable(False, exc)
            raise StoreUnavailable(UNAVAILABLE_DETAIL) from exc
        self._note_reachable(True)

    def _note_reachable(self, reachable: bool, exc: BaseException | None = None) -> None:
        """Log when the database goes away and when it is back, not at every failed query."""
        if reachable != self._reachable:
            self._reachable = reachable
            if reachable:
                log.warning("The database answers again")
            else:
                log.error("The database cannot be reached: %s", str(exc or "") or "no answer in time")

    # Writes -----------------------------------------------------------------

    async def create_user(self, username: str, user_id: str | None = None) -> tuple[dict[str, Any], str | None]:
        """A new user and its token; with `user_id`, (the existing user, None) if that id was taken,
        even a moment earlier. The contract is Database.create_user's: a None token means "check the token"."""
        token = secrets.token_urlsafe(32)
        user = {"id": user_id or str(uuid.uuid4()), "username": username, "joined_at": utc_now()}
        async with self._connection() as conn:
            created = await conn.fetchval(
                "INSERT INTO users (id, username, token_hash, joined_at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (id) DO NOTHING RETURNING true",
                user["id"], username, hash_token(token), user["joined_at"])
        if not created:
            return await self.get_user(user["id"]), None  # another request created this id a moment earlier
        return user, token

    async def create_room(self, name: str, room_id: str | None = None) -> dict[str, Any]:
        """A new room (with `room_id`: that room, unless it already exists)."""
        room = {"id": room_id or str(uuid.uuid4()), "name": name, "created_at": utc_now()}
        async with self._connection() as conn:
            await conn.execute("INSERT INTO rooms (id, name, created_at) VALUES ($1, $2, $3) "
                               "ON CONFLICT (id) DO NOTHING", room["id"], name, room["created_at"])
        return room

    async def add_member(self, room_id: str, user_id: str) -> None:
        """Make the user a member of the room; being one already is fine."""
        async with self._connection() as conn:
            await conn.execute("INSERT INTO memberships (room_id, user_id, joined_at) VALUES ($1, $2, $3) "
                               "ON CONFLICT DO NOTHING", room_id, user_id, utc_now())

    async def add_message(self, room_id: str, user_id: str, username: str, content: str) -> dict[str, Any]:
        """Store a chat message; it is committed, with its `seq`, when this returns."""
        message = {"id": str(uuid.uuid4()), "seq": 0, "room_id": room_id, "user_id": user_id,
                   "username": username, "content": content, "timestamp": utc_now()}
        stored = asyncio.get_running_loop().create_future()
        self._queued.append((message, stored))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_groups(), name="pg-commit")
        await stored
        return message

    async def _commit_groups(self) -> None:
        """Commit the queued messages, a group per transaction, one transaction at a time.

        Messages that arrive while a group commits form the next group: one commit
        (and one WAL flush) for all of them, as many as arrive, so a busy server
        commits more per flush rather than waiting for more flushes. The groups of
        one burst share a pooled connection, taken once.
        """
        try:
            while self._queued:
                group = self._next_group()
                try:
                    async with self._connection() as conn:
                        while True:
                            committed = await self._store_group(conn, [message for message, _ in group])
                            self._settle(group, committed)
                            if not self._queued:
                                break
                            group = self._next_group()
                except Exception as exc:
                    if isinstance(exc, asyncpg.PostgresError):
                        log.error("Could not store %d messages: %s", len(group), exc)
                        exc = MessageNotStored()
                    for _, stored in group:
                        if not stored.done():
                            stored.set_exception(exc)
        finally:
            self._committer = None

    def _next_group(self) -> list[tuple[dict[str, Any], asyncio.Future[None]]]:
        group, self._queued = self._queued[:MAX_GROUP], self._queued[MAX_GROUP:]
        return group

    def _settle(self, group: list[tuple[dict[str, Any], asyncio.Future[None]]],
                committed: list[frames.Stored]) -> None:
        """Deliver a committed group here, in seq order and in one go (one write per socket), before
        its writers hear back."""
        self._announce([message for message in committed if self._take_if_next(message.room_id, message.seq)])
        for message, stored in group:
            if stored.done():
                continue  # its socket went away meanwhile
            if message["seq"]:
                stored.set_result(None)
            else:
                stored.set_exception(LookupError(f"no room {message['room_id']!r} to store a message in"))

    async def _store_group(self, conn: asyncpg.Connection, messages: list[dict[str, Any]]) -> list[frames.Stored]:
        """Store messages in one statement, giving each the next seq of its room (0: no such room)."""
        items = [frames.to_json(message) for message in messages]  # each message is encoded once, here
        by_room: dict[str, list[str]] = {}
        for message, item in zip(messages, items):
            by_room.setdefault(message["room_id"], []).append(item)
        lines = ["\n".join(room) for room in by_room.values()]
        rows = await conn.fetch(STORE_MESSAGES, list(by_room), lines, [len(room) for room in by_room.values()],
                                [_carries(room_id, text) for room_id, text in zip(by_room, lines)],
                                [messages_channel(room_id) for room_id in by_room])
        next_seq = {room_id: last_seq - len(by_room[room_id]) + 1 for room_id, last_seq, _ in rows}
        committed = []
        for message, item in zip(messages, items):
            seq = next_seq.get(message["room_id"])
            if seq is not None:
                message["seq"] = seq
                next_seq[message["room_id"]] = seq + 1
                committed.append(frames.Stored(message["room_id"], seq, frames.numbered(item, seq)))
        return committed

    # Following rooms: every process delivers every message of the rooms it follows -------

    async def follow(self, room_id: str) -> None:
        """Deliver the room's messages from now on, until as many unfollow() calls."""
        self._followers[room_id] += 1
        if self._followers[room_id] == 1:
            self._channel_rooms[messages_channel(room_id)] += 1
        if room_id in self._delivered:
            return
        try:
            # Listening first: a commit after the read below is then notified.
            await self._listen_to(messages_channel(room_id))
            async with self._connection() as conn:
                last = await conn.fetchval("SELECT last_seq FROM rooms WHERE id = $1", room_id) or 0
        except BaseException:
            self.unfollow(room_id)
            raise
        if self._followers[room_id] > 0:
            self._delivered.setdefault(room_id, last)

    def unfollow(self, room_id: str) -> None:
        self._followers[room_id] -= 1
        if self._followers[room_id] <= 0:
            del self._followers[room_id]
            self._delivered.pop(room_id, None)
            channel = messages_channel(room_id)
            self._channel_rooms[channel] -= 1
            if self._channel_rooms[channel] <= 0:
                del self._channel_rooms[channel]
                task = asyncio.create_task(self._unlisten(channel))
                self._unlistening.add(task)
                task.add_done_callback(self._unlistening.discard)

    async def _listen_to(self, channel: str) -> None:
        """Have the listener (if it is up) receive a followed room's notices from now on."""
        async with self._listener_lock:
            conn = self._listener
            if conn is None or channel in self._channels or channel not in self._channel_rooms:
                return
            try:
                await conn.add_listener(channel, self._message_notified)
            except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
                if not conn.is_closed():  # a lost connection is logged, and listened to again, by _listen()
                    log.warning("Listening to %s failed: %s", channel, exc)
                return
            self._channels.add(channel)

    async def _unlisten(self, channel: str) -> None:
        """Stop receiving a channel whose rooms nobody here follows any longer (unless one is followed again)."""
        async with self._listener_lock:
            conn = self._listener
            if conn is None or channel not in self._channels or channel in self._channel_rooms:
                return
            with contextlib.suppress(*UNAVAILABLE, asyncpg.PostgresError):  # a new connection starts afresh
                await conn.remove_listener(channel, self._message_notified)
                self._channels.discard(channel)

    def _take_if_next(self, room_id: str, seq: int) -> bool:
        """Whether the message is the next one to deliver in its room (and so counted as delivered).
        A message further on means others came between: they are read from the table, unless
        notices are on their way with them."""
        delivered = self._delivered.get(room_id)
        if delivered is None or seq <= delivered:
            return False  # nobody here follows the room, or it was delivered already
        if seq > delivered + 1:
            if not self._notices_come(room_id):
                self._read_new(room_id)
            return False
        self._delivered[room_id] = seq
        return True

    def _notices_come(self, room_id: str) -> bool:
        """Whether the listener hears the room's commits. Only a group stored here can find a gap before
        it and still have the gap's notices to come (its result can overtake them): notices arrive in
        commit order, so theirs come before the group's own, and each carries its messages or says
        they must be read. A listener lost meanwhile reads every room again when it is back."""
        return self._listener is not None and messages_channel(room_id) in self._channels

    def _announce(self, messages: list[frames.Stored]) -> None:
        if messages and self.on_messages_committed is not None:
            try:
                self.on_messages_committed(messages)
            except Exception:
                log.exception("Announcing %d stored messages failed", len(messages))

    def _read_new(self, room_id: str) -> None:
        """Read and deliver the room's messages after the last one delivered; one reader per room at a time."""
        if room_id in self._reading:
            self._read_again.add(room_id)
        else:
            self._reading[room_id] = asyncio.create_task(self._read_room(room_id))

    async def _read_room(self, room_id: str) -> None:
        try:
            while room_id in self._delivered:
                self._read_again.discard(room_id)
                after = self._delivered[room_id]
                page = await self.messages(room_id, READ_PAGE, after=after)
                # Messages stored here, or carried by notices, may have been delivered while the page was read.
                self._announce([frames.stored(message) for message in page
                                if self._take_if_next(message["room_id"], message["seq"])])
                if len(page) < READ_PAGE and room_id not in self._read_again:
                    break
        except StoreUnavailable:
            pass  # the poll tries again once the database answers
        except Exception:
            log.exception("Reading new messages of room %s failed", room_id)
        finally:
            del self._reading[room_id]

    async def _listen(self) -> None:
        """Keep a LISTEN connection; each notification wakes the reader of its room."""
        wait = RECONNECT_SECONDS[0]
        while self._notifications:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT_SECONDS,
                                             command_timeout=QUERY_TIMEOUT_SECONDS)
            except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
                log.warning("Listening for notifications failed (again in %g s): %s", wait, exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_SECONDS[1])
                continue
            try:
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(EVENTS_CHANNEL, self._event_notified)
                self._listener, self._channels = conn, set()
                for channel in list(self._channel_rooms):
                    await self._listen_to(channel)
                wait = RECONNECT_SECONDS[0]
                for room_id in list(self._delivered):  # what was notified while nobody listened
                    self._read_new(room_id)
                await lost.wait()
                log.warning("The notification connection was lost; reconnecting")
            except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
                log.warning("Listening for notifications failed: %s", exc)
            finally:
                self._listener = None
                conn.terminate()

    def _message_notified(self, _conn: Any, _pid: int, _channel: str, notice: str) -> None:
        # asyncpg calls listeners one loop pass after it read their notices: the notices of one read
        # are taken together in the next pass, so their messages go out in one write per socket.
        if not self._notices:
            asyncio.get_running_loop().call_soon(self._take_notices)
        self._notices.append(notice)

    def _take_notices(self) -> None:
        """Deliver the messages notices carry when they are the rooms' next ones; else read the table."""
        notices, self._notices = self._notices, []
        ready = []
        for notice in notices:
            head, _, carried = notice.partition("\n")
            last_seq, _, room_id = head.partition(" ")
            last, delivered = int(last_seq), self._delivered.get(room_id)
            if delivered is None or last <= delivered:
                continue  # not followed here, or delivered already (stored here, or read)
            items = carried.split("\n") if carried else []
            first = last - len(items) + 1
            if items and first <= delivered + 1:
                ready += [frames.Stored(room_id, seq, frames.numbered(item, seq))
                          for seq, item in enumerate(items, start=first) if seq > delivered]
                self._delivered[room_id] = last
            else:
                self._read_new(room_id)  # a gap (a notice missed), or messages too big to carry
        self._announce(ready)

    def _event_notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        event = json.loads(payload)
        if event["process"] != self.process_id and self.on_room_event is not None:
            self.on_room_event(event["room_id"], frames.text_frame_of(event["frame"].encode()))

    async def _poll(self) -> None:
        """Every POLL_SECONDS, read the followed rooms that have messages not yet delivered here."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if not self._delivered:
                continue
            try:
                async with self._connection() as conn:
                    rows = await conn.fetch("SELECT id, last_seq FROM rooms WHERE id = ANY($1::text[])",
                                            list(self._delivered))
            except (StoreUnavailable, asyncpg.PostgresError):
                continue
            for room_id, last_seq in rows:
                if last_seq > self._delivered.get(room_id, last_seq):
                    self._read_new(room_id)

    # Sockets on every process: join and leave notices, presence ----------------------------

    def socket_opened(self, room_id: str, user_id: str, username: str, joined_frame: bytes) -> None:
        """A socket joined the room here: tell the other processes and count it in presence."""
        self._events.put_nowait((room_id, user_id, username, 1, joined_frame))

    def socket_closed(self, room_id: str, user_id: str, username: str, left_frame: bytes) -> None:
        """A socket left the room here: tell the other processes and count it out of presence."""
        self._events.put_nowait((room_id, user_id, username, -1, left_frame))

    async def _write_events(self) -> None:
        """Write presence changes and their notices in order, each change with its notice in one transaction."""
        while True:
            room_id, user_id, username, change, frame = await self._events.get()
            key = (room_id, user_id)
            self._here[key] += change
            self._names[key] = username
            if self._here[key] <= 0:
                del self._here[key], self._names[key]
            payload = json.dumps({"process": self.process_id, "room_id": room_id,
                                  "frame": frames.payload_of(frame).decode()})
            try:
                async with self._connection() as conn, conn.transaction():
                    if key in self._here:
                        await conn.execute(
                            "INSERT INTO presence (process_id, room_id, user_id, username, connections) "
                            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (process_id, room_id, user_id) "
                            "DO UPDATE SET connections = excluded.connections",
                            self.process_id, room_id, user_id, username, self._here[key])
                    else:
                        await conn.execute("DELETE FROM presence WHERE process_id = $1 AND room_id = $2 "
                                           "AND user_id = $3", self.process_id, room_id, user_id)
                    await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, payload)
            except (StoreUnavailable, asyncpg.PostgresError) as exc:
                log.warning("A join or leave notice of room %s reached no other process: %s", room_id, exc)
                self._presence_stale = True
            finally:
                self._events.task_done()

    async def _heartbeat_regularly(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._heartbeat()
            except (StoreUnavailable, asyncpg.PostgresError):
                self._presence_stale = True

    async def _heartbeat(self) -> None:
        """Say this process is alive; rewrite its presence rows if they may be wrong, and forget dead processes."""
        async with self._connection() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO processes (id, name) VALUES ($1, $2) "
                "ON CONFLICT (id) DO UPDATE SET last_seen = now() RETURNING xmax = 0",
                self.process_id, PROCESS_NAME)
            if inserted or self._presence_stale:  # new, or the database lost its unlogged tables
                await conn.execute("DELETE FROM presence WHERE process_id = $1", self.process_id)
                await conn.executemany(
                    "INSERT INTO presence (process_id, room_id, user_id, username, connections) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    [(self.process_id, room_id, user_id, self._names[room_id, user_id], count)
                     for (room_id, user_id), count in self._here.items()])
            await conn.execute(f"DELETE FROM processes WHERE last_seen < now() - interval "
                               f"'{4 * PROCESS_TIMEOUT_SECONDS:g} seconds'")
        self._presence_stale = False

    async def presence(self, room_id: str, here: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Who is connected to the room on every live process; `here` is this process's share."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"""SELECT p.user_id, min(p.username), sum(p.connections)::int
                    FROM presence p JOIN processes s ON s.id = p.process_id
                    WHERE p.room_id = $1 AND p.process_id <> $2 AND s.{ALIVE}
                    GROUP BY p.user_id""", room_id, self.process_id)
        users = {entry["user_id"]: dict(entry) for entry in here}
        for user_id, username, connections in rows:
            entry = users.setdefault(user_id, {"user_id": user_id, "username": username, "connections": 0})
            entry["connections"] += connections
        return sorted(users.values(), key=lambda entry: (entry["username"], entry["user_id"]))

    async def socket_counts(self, here: dict[str, int]) -> dict[str, int]:
        """Rooms with a socket, users with one, and sockets, over every live process (`here` is not needed)."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"""SELECT count(DISTINCT p.room_id), count(DISTINCT p.user_id), coalesce(sum(p.connections), 0)::int
                    FROM presence p JOIN processes s ON s.id = p.process_id WHERE s.{ALIVE}""")
        return {"active_rooms": row[0], "active_users": row[1], "connections": row[2]}

    # Reads ------------------------------------------------------------------

    async def get_user(self, user_id: str) -> dict[str, Any] | None:
        async with self._connection() as conn:
            row = await conn.fetchrow("SELECT id, username, joined_at FROM users WHERE id = $1", user_id)
        return dict(row) if row else None

    async def list_users(self, limit: int, after: str | None = None) -> list[dict[str, Any]]:
        """Up to `limit` users in creation order, after the user with id `after` (a page's last)."""
        where, params = ("WHERE position > (SELECT position FROM users WHERE id = $2)", (after,)) \
            if after is not None else ("", ())
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT id, username, joined_at FROM users {where} ORDER BY position LIMIT $1", limit, *params)
        return [dict(row) for row in rows]

    async def check_token(self, user_id: str, token: str | None) -> bool:
        """Whether `token` is the user's token (compared in constant time)."""
        if not token or not storable(token):
            return False
        async with self._connection() as conn:
            stored = await conn.fetchval("SELECT token_hash FROM users WHERE id = $1", user_id)
        return stored is not None and secrets.compare_digest(stored, hash_token(token))

    async def member_with_token(self, room_id: str, token: str | None) -> str | None:
        """The id of the room's member whose token this is, or None (see Database.member_with_token)."""
        if not token or not storable(token):
            return None
        async with self._connection() as conn:
            return await conn.fetchval(
                "SELECT u.id FROM users u JOIN memberships m ON m.user_id = u.id AND m.room_id = $1 "
                "WHERE u.token_hash = $2", room_id, hash_token(token))

    async def room_name(self, room_id: str) -> str | None:
        async with self._connection() as conn:
            return await conn.fetchval("SELECT name FROM rooms WHERE id = $1", room_id)

    async def get_room(self, room_id: str) -> dict[str, Any] | None:
        rooms = await self._rooms("WHERE id = $2", (room_id,), 1)
        return rooms[0] if rooms else None

    async def list_rooms(self, limit: int, after: str | None = None) -> list[dict[str, Any]]:
        """Up to `limit` rooms in creation order, after the room with id `after` (a page's last)."""
        if after is None:
            return await self._rooms("", (), limit)
        return await self._rooms("WHERE position > (SELECT position FROM rooms WHERE id = $2)", (after,), limit)

    async def _rooms(self, where: str, params: tuple[Any, ...], limit: int) -> list[dict[str, Any]]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"""SELECT r.id, r.name, r.created_at,
                           coalesce(array_agg(m.user_id ORDER BY m.joined_at, m.user_id)
                                    FILTER (WHERE m.user_id IS NOT NULL), '{{}}') AS users
                    FROM (SELECT id, name, created_at, position FROM rooms {where}
                          ORDER BY position LIMIT $1) r
                    LEFT JOIN memberships m ON m.room_id = r.id
                    GROUP BY r.id, r.name, r.created_at, r.position ORDER BY r.position""", limit, *params)
        return [dict(row) for row in rows]

    async def messages(self, room_id: str, limit: int, before: int | None = None,
                       after: int | None = None) -> list[dict[str, Any]]:
        """A page of a room's messages, oldest first: the last `limit`, or those just before or after a seq."""
        if after is not None:
            sql, params = SELECT_MESSAGES.format(where="AND m.seq > $2", order="ASC", limit=3), (after, limit)
        elif before is not None:
            sql, params = SELECT_MESSAGES.format(where="AND m.seq < $2", order="DESC", limit=3), (before, limit)
        else:
            sql, params = SELECT_MESSAGES.format(where="", order="DESC", limit=2), (limit,)
        async with self._connection() as conn:
            rows = await conn.fetch(sql, room_id, *params)
        page = [dict(row) for row in rows]
        return page if after is not None else page[::-1]

    @property
    def write_failure(self) -> str | None:
        """Always None: a PostgreSQL out of disk fails each write with StoreUnavailable on its own,
        and its server, not this process, is where its disk is watched."""
        return None

    async def counts(self) -> dict[str, int]:
        """How many users, rooms and messages are stored."""
        async with self._connection() as conn:
            row = await conn.fetchrow("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM rooms), "
                                      "(SELECT coalesce(sum(last_seq), 0)::bigint FROM rooms)")
        return {"users": row[0], "rooms": row[1], "messages": row[2]}


POSTGRES_MIGRATIONS = MIGRATIONS_DIR / "postgresql"


async def _nothing_to_reset(_conn: asyncpg.Connection) -> None:
    """The pool resets a connection it takes back with a query of its own, one more round trip per
    use; the queries here leave nothing in a session to reset (no SET, no LISTEN, no lock held)."""


def messages_channel(room_id: str) -> str:
    """The channel of the room's commit notices."""
    return f"chat_messages_{zlib.crc32(room_id.encode()) % MESSAGE_CHANNELS}"


def _carries(room_id: str, lines: str) -> bool:
    """Whether one room's notice can carry its messages' lines after its "LAST_SEQ ROOM_ID" line, so that
    the other processes need not read them back. Their seqs, not known yet, are 0 in them: they are
    the last ones up to LAST_SEQ."""
    head_bytes = len(room_id.encode()) + 22  # a seq of up to 19 digits, a space, a newline
    return len(lines.encode()) + head_bytes < NOTICE_LIMIT


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply every migration newer than the recorded version, all in one transaction.

    The transaction first takes an advisory lock, held until it ends, so processes that
    start together migrate one at a time: the first applies the files, the others then
    find nothing left to do. It is the transaction's lock, not the session's, because a
    pooler in transaction mode may run a session's next statement on another connection.
    """
    files = migration_files(POSTGRES_MIGRATIONS)
    latest = files[-1][0] if files else 0
    applied = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        if version > latest:
            raise MigrationError(f"the database is at schema version {version}, newer than this server's {latest}")
        for number, path in files:
            if number <= version:
                continue
            try:
                await conn.execute(path.read_text())
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {path.name} failed: {exc}") from None
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
            applied.append(path.name)
            version = number
    for name in applied:
        log.info("Applied migration postgresql/%s", name)
    return version
