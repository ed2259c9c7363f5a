"""All SQL: connecting, migrating, and every read and write of the chat's data.

Writes are committed in groups, on the event loop's own thread: the writes
queued during one pass of the loop go into one transaction, so a burst of
messages costs one commit, not one each. In WAL mode with synchronous=NORMAL a
commit appends a few pages to the WAL and waits neither for the disk nor for a
lock, which is quicker than a round trip to a thread and back. Reads, which
can take long, run on aiosqlite's threads beside the writer: one connection
for reading, one that checkpoints the WAL into the database file. Functions
return plain dicts shaped like the API's JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import hmac
import itertools
import logging
import os
import re
import secrets
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
from aiohttp import web

from . import frames
from .clock import utc_now

log = logging.getLogger(__name__)

# Lengths the API accepts; the schema's CHECKs hold the lower bounds too.
MIN_USERNAME, MAX_USERNAME = 2, 50
MAX_ROOM_NAME = 100
MAX_ID = 100
MAX_SEQ = 2**63 - 1  # SQLite's largest INTEGER

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_NAME = re.compile(r"^(\d{4})_\w+\.sql$")

# Writes are INSERTs of one row each; a run of them becomes one multi-row INSERT (see _insert_rows).
INSERT_USER = "INSERT OR IGNORE INTO users (id, username, token_hash, joined_at) VALUES"
INSERT_ROOM = "INSERT OR IGNORE INTO rooms (id, name, created_at) VALUES"
INSERT_MEMBER = "INSERT OR IGNORE INTO memberships (room_id, user_id, joined_at) VALUES"
INSERT_MESSAGE = "INSERT INTO messages (room_id, seq, id, user_id, content, timestamp) VALUES"
# Checkpoints: in the first pause of writing this long, and under steady writes at least this often.
CHECKPOINT_WHEN_QUIET_SECONDS = 1.0
CHECKPOINT_AT_LEAST_SECONDS = 10.0
# A -wal file bigger than this is started over (and cut back) at the next checkpoint, even while
# writes go on; in a pause it is emptied whatever its size.
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
CHECKPOINT_LOCK_WAIT_SECONDS = 0.2
# How long writes wait for another process's write lock (the sqlite3 shell in a transaction, say).
BUSY_TIMEOUT_SECONDS = 5.0
BUSY_RETRY_SECONDS = 0.01
# While writes fail for want of space, a write this big is tried this often (see _probe_writes).
WRITE_PROBE_SECONDS = 1.0
WRITE_PROBE_BYTES = 16384
MAX_ROWS_PER_INSERT = 500  # 500 rows of at most 6 values stay far below SQLite's 32766 parameters
SELECT_MESSAGES = """
    SELECT m.id, m.seq, m.room_id, m.user_id, u.username, m.content, m.timestamp
    FROM messages m JOIN users u ON u.id = m.user_id
    WHERE m.room_id = ? {where} ORDER BY m.seq {order} LIMIT ?
"""


class MigrationError(RuntimeError):
    """The database's schema cannot be brought up to date."""


class StoreUnavailable(Exception):
    """The store cannot do this now (locked by another program, disk full, a server gone away).

    `detail` is the sentence a client is shown (HTTP 503); `close_reason` the shorter one a
    socket being admitted is closed with (1013; a close reason holds at most 123 bytes).
    """

    def __init__(self, detail: str, close_reason: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.close_reason = close_reason or detail


class DatabaseInUse(RuntimeError):
    """Another server process has the SQLite file open: one file serves one process."""


class DatabaseBusy(StoreUnavailable):
    """Another connection held the write lock for longer than BUSY_TIMEOUT_SECONDS."""

    def __init__(self) -> None:
        super().__init__("The database is locked by another program; try again", "Database busy, try again")


class MessageNotStored(StoreUnavailable):
    """The database refused to store a chat message (a constraint, say): a bug, not its writer's.
    Either store says so this way, so that the socket answers with its error frame and goes on."""

    def __init__(self) -> None:
        super().__init__("The message could not be stored")


class DiskFull(StoreUnavailable):
    """SQLite could not grow the database or its WAL: the disk (or a quota) is full."""

    def __init__(self) -> None:
        super().__init__("The server's disk is full; try again later")


@dataclasses.dataclass(slots=True)
class _Write:
    sql: str
    params: tuple[Any, ...]
    done: asyncio.Future[None]
    queued_at: float  # loop time; a write waits for another process's lock BUSY_TIMEOUT_SECONDS from here
    message: dict[str, Any] | None = None  # a chat message, whose seq is given at commit time


class Database:
    """The chat's store: writes committed in groups on the event loop's thread; reads and checkpoints on aiosqlite's."""

    kind = "sqlite"

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: aiosqlite.Connection,
                 checkpointer: aiosqlite.Connection, owner: int) -> None:
        self._owner = owner
        self._wal_path = path.with_name(path.name + "-wal")
        self._writer = writer
        self._reader = reader
        self._checkpointer = checkpointer
        self._queue: list[_Write] = []
        self._commit: asyncio.Handle | None = None  # the scheduled commit of the queue, or its retry
        self._last_commit = float("-inf")  # loop time of the last commit
        self._closing = False
        self._write_failure: str | None = None  # why writes fail, from a failure until a write succeeds
        self._probe_task: asyncio.Task[None] | None = None
        # The last seq of each room seen by the writer; nothing else writes messages.
        self._last_seq: dict[str, int] = {}
        self._checkpoint_task = asyncio.create_task(self._checkpoint_regularly(), name="db-checkpoint")
        # Told of the messages of each commit, in seq order, right after it (see server/__init__.py).
        self.on_messages_committed: Callable[[list[frames.Stored]], None] | None = None
        # Told of join and leave notices from other processes' sockets: never, there are none.
        self.on_room_event: Callable[[str, bytes], None] | None = None

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Connect to (and create) the database file and apply pending migrations."""
        writer = _connect_writer(path)
        try:
            owner = _own(path)
        except BaseException:
            writer.close()
            raise
        try:
            migrate(writer)
            writer.execute("PRAGMA busy_timeout = 0")  # from now on, see _commit_queue
            reader = await _connect(path)
            checkpointer = await _connect(path)
            # A TRUNCATE checkpoint waits this long for the writer's lock, or for readers while it
            # holds that lock, then gives up until the next checkpoint; PASSIVE ones never wait.
            await checkpointer.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_LOCK_WAIT_SECONDS * 1000)}")
        except BaseException:
            writer.close()
            os.close(owner)
            raise
        return cls(path, writer, reader, checkpointer, owner)

    async def close(self) -> None:
        """Commit what is queued, then close the connections (the last one checkpoints the WAL)."""
        self._closing = True
        await asyncio.gather(*(write.done for write in self._queue), return_exceptions=True)
        for task in (self._checkpoint_task, self._probe_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._checkpointer.close()
        await self._reader.close()
        self._writer.close()
        os.close(self._owner)

    async def _checkpoint_regularly(self) -> None:
        """Copy committed pages from the WAL into the database file, beside the writer.

        A PASSIVE checkpoint waits for no one and nobody waits for it, but commits that
        run beside one are slower (measured: latency p99 1.40x the baseline's with one
        every second, 0.88x with one every 10 s), so it waits for a pause in writing,
        and under steady writes comes every CHECKPOINT_AT_LEAST_SECONDS. The checkpoint
        is also when the WAL is synced to disk, which bounds what a power loss can take.

        Under steady writes a PASSIVE checkpoint never catches up with the writer, so the
        WAL is never started over and grows by every commit (a flood: 350 MB in 20 s).
        A TRUNCATE checkpoint starts it over and gives its space back; it holds the write
        lock (the writer retries in 10 ms) while it copies what the PASSIVE one left, so
        it follows a PASSIVE one: in a pause, and under writes once the WAL is too big.
        """
        loop = asyncio.get_running_loop()
        last_checkpoint = loop.time()
        while True:
            await asyncio.sleep(CHECKPOINT_WHEN_QUIET_SECONDS)
            now = loop.time()
            if self._last_commit < last_checkpoint:
                continue  # nothing new to copy
            if now - self._last_commit < CHECKPOINT_WHEN_QUIET_SECONDS and \
                    now - last_checkpoint < CHECKPOINT_AT_LEAST_SECONDS:
                continue  # still writing, and not for long
            last_checkpoint = now
            try:
                await self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
                if now - self._last_commit >= CHECKPOINT_WHEN_QUIET_SECONDS or \
                        self._wal_path.stat().st_size > WAL_SIZE_LIMIT_BYTES:
                    await self._checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except (sqlite3.Error, OSError) as exc:
                log.warning("Checkpoint failed (to be tried again): %s", exc)

    # Writes -----------------------------------------------------------------

    async def create_user(self, username: str, user_id: str | None = None) -> tuple[dict[str, Any], str | None]:
        """A new user and its token: `(user, token)`.

        With `user_id`, the user is created with that id unless one exists already,
        even if it was created a moment ago by a concurrent call: then nothing is
        written and the answer is `(the existing user, None)`. A None token means
        "you did not create this user": callers must treat the caller like any
        other client asking to act as an existing user (check its token).
        """
        token = secrets.token_urlsafe(32)
        user = {"id": user_id or str(uuid.uuid4()), "username": username, "joined_at": utc_now()}
        await self._write(INSERT_USER, (user["id"], username, hash_token(token), user["joined_at"]))
        if user_id is not None and not await self.check_token(user_id, token):
            return await self.get_user(user_id), None  # another request created this id a moment earlier
        return user, token

    async def create_room(self, name: str, room_id: str | None = None) -> dict[str, Any]:
        """A new room (with `room_id`: that room, unless it already exists)."""
        room = {"id": room_id or str(uuid.uuid4()), "name": name, "created_at": utc_now()}
        await self._write(INSERT_ROOM, (room["id"], name, room["created_at"]))
        return room

    async def add_member(self, room_id: str, user_id: str) -> None:
        """Make the user a member of the room; being one already is fine."""
        await self._write(INSERT_MEMBER, (room_id, user_id, utc_now()))

    async def add_message(self, room_id: str, user_id: str, username: str, content: str) -> dict[str, Any]:
        """Store a chat message; it is committed, with its `seq`, when this returns."""
        message = {"id": str(uuid.uuid4()), "seq": 0, "room_id": room_id, "user_id": user_id,
                   "username": username, "content": content, "timestamp": utc_now()}
        try:
            await self._write(INSERT_MESSAGE, (), message)
        except sqlite3.Error as exc:  # logged where the run of rows failed (_commit_queue)
            raise MessageNotStored() from exc
        return message

    def _write(self, sql: str, params: tuple[Any, ...], message: dict[str, Any] | None = None) -> asyncio.Future[None]:
        if self._closing:
            raise RuntimeError("the database is closed")
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.append(_Write(sql, params, done, loop.time(), message))
        if self._commit is None:
            self._commit = loop.call_soon(self._commit_queue)
        return done

    def _commit_queue(self) -> None:
        """Commit every write queued since the last commit (those of one pass of the loop; under load, many).

        It never waits for a lock, as it runs on the event loop's thread: while another
        process holds the write lock, the queue is tried again every BUSY_RETRY_SECONDS,
        in order, and each write is given up BUSY_TIMEOUT_SECONDS after it was queued.
        """
        loop = asyncio.get_running_loop()
        self._commit = None
        self._last_commit = loop.time()
        runs = _runs_of_one_kind(self._queue)
        self._queue = []
        for index, run in enumerate(runs):
            try:
                self._insert(run)
            except sqlite3.OperationalError as exc:
                code = exc.sqlite_errorcode & 0xFF  # the low byte: BUSY_RECOVERY etc. too
                if code == sqlite3.SQLITE_FULL:
                    self._writes_fail(run, DiskFull())
                    continue
                if code != sqlite3.SQLITE_BUSY:
                    log.error("Could not store %d rows: %s", len(run), exc)
                    self._fail(run, exc)
                    continue
                waiting = [write for later in runs[index:] for write in later]
                # The queue is in the order of queueing, so the writes out of time come first.
                expired = next((n for n, write in enumerate(waiting)
                                if self._last_commit - write.queued_at < BUSY_TIMEOUT_SECONDS), len(waiting))
                if expired:
                    log.warning("Could not store %d rows: another program held the write lock for %g s",
                                expired, BUSY_TIMEOUT_SECONDS)
                    self._fail(waiting[:expired], DatabaseBusy())
                self._queue[:0] = waiting[expired:]
                if self._queue:
                    self._commit = loop.call_later(BUSY_RETRY_SECONDS, self._commit_queue)
                return
            except Exception as exc:  # a constraint, say: only this run of rows fails
                log.error("Could not store %d rows: %s", len(run), exc)
                self._fail(run, exc)
            else:
                if self._write_failure is not None:
                    self._writes_work_again()
                self._settle(run)

    def _insert(self, writes: list[_Write]) -> None:
        """Store a run of writes of one kind in one multi-row INSERT: one statement, one transaction."""
        try:
            for write in writes:
                if write.message is not None:
                    write.params = self._number_message(write.message)
            params = [value for write in writes for value in write.params]
            self._writer.execute(_insert_rows(writes[0].sql, len(writes[0].params), len(writes)), params)
        except Exception:
            self._last_seq.clear()  # the seqs just given out were not stored
            raise

    def _settle(self, writes: list[_Write]) -> None:
        # Messages are announced in the order they were numbered, and before their writers hear back.
        messages = [frames.stored(write.message) for write in writes if write.message is not None]
        if messages and self.on_messages_committed is not None:
            try:
                self.on_messages_committed(messages)
            except Exception:
                log.exception("Announcing %d stored messages failed", len(messages))
        for write in writes:
            if not write.done.done():
                write.done.set_result(None)

    def _fail(self, writes: list[_Write], exc: Exception) -> None:
        for write in writes:
            if not write.done.done():
                write.done.set_exception(exc)

    @property
    def write_failure(self) -> str | None:
        """Why writes fail (a full disk), from a failure until a write succeeds again; None while they work."""
        return self._write_failure

    def _writes_fail(self, writes: list[_Write], failure: StoreUnavailable) -> None:
        if self._write_failure is None:  # one line for the whole outage, not one per write
            log.error("Writes fail: %s (SQLite could not grow the database or its -wal)", failure.detail)
        self._write_failure = failure.detail
        if self._probe_task is None:
            self._probe_task = asyncio.create_task(self._probe_writes(), name="db-write-probe")
        self._fail(writes, failure)

    def _writes_work_again(self) -> None:
        log.warning("Writes work again")
        self._write_failure = None

    async def _probe_writes(self) -> None:
        """While writes fail for want of space, try a small real write now and then: /health must see
        the space come back even when no client writes (say, a balancer stopped sending any)."""
        while self._write_failure is not None:
            await asyncio.sleep(WRITE_PROBE_SECONDS)
            try:
                # One transaction on the loop's thread, like every write: nothing else runs in between.
                self._writer.execute("BEGIN IMMEDIATE")
                self._writer.execute("INSERT INTO write_probe (filler) VALUES (zeroblob(?))", (WRITE_PROBE_BYTES,))
                self._writer.execute("DELETE FROM write_probe")
                self._writer.execute("COMMIT")
            except sqlite3.Error:
                if self._writer.in_transaction:  # SQLite may have rolled back by itself
                    with contextlib.suppress(sqlite3.Error):
                        self._writer.execute("ROLLBACK")
            else:
                if self._write_failure is not None:
                    self._writes_work_again()
        self._probe_task = None

    def _number_message(self, message: dict[str, Any]) -> tuple[Any, ...]:
        room_id = message["room_id"]
        last = self._last_seq.get(room_id)
        if last is None:
            row = self._writer.execute("SELECT max(seq) FROM messages WHERE room_id = ?", (room_id,)).fetchone()
            last = row[0] or 0
        message["seq"] = self._last_seq[room_id] = last + 1
        return (room_id, message["seq"], message["id"], message["user_id"], message["content"], message["timestamp"])

    # One process holds every socket and hears every commit ---------------------
    # A store shared by several processes (server/postgres.py) does work here; this one has none to do.

    async def follow(self, room_id: str) -> None:
        """Deliver the room's messages from now on: every commit is announced here already."""

    def unfollow(self, room_id: str) -> None:
        """No longer needed by a follower: nothing to stop."""

    def socket_opened(self, room_id: str, user_id: str, username: str, joined_frame: bytes) -> None:
        """A socket joined the room: the hub has told everyone, there is no other process."""

    def socket_closed(self, room_id: str, user_id: str, username: str, left_frame: bytes) -> None:
        """A socket left the room: the hub has told everyone, there is no other process."""

    async def presence(self, room_id: str, here: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Who is connected to the room: those here, as no other process shares this file."""
        return here

    async def socket_counts(self, here: dict[str, int]) -> dict[str, int]:
        """Rooms with a socket, users with one, and sockets: those here."""
        return here

    # Reads ------------------------------------------------------------------

    async def get_user(self, user_id: str) -> dict[str, Any] | None:
        rows = await self._reader.execute_fetchall(
            "SELECT id, username, joined_at FROM users WHERE id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    async def list_users(self, limit: int, after: str | None = None) -> list[dict[str, Any]]:
        """Up to `limit` users in creation order, after the user with id `after` (a page's last)."""
        # rowid breaks ties in creation order: many users are created within one millisecond.
        where, params = ("WHERE (joined_at, rowid) > (SELECT joined_at, rowid FROM users WHERE id = ?)", (after,)) \
            if after is not None else ("", ())
        rows = await self._reader.execute_fetchall(
            f"SELECT id, username, joined_at FROM users {where} ORDER BY joined_at, rowid LIMIT ?", (*params, limit))
        return [_user(row) for row in rows]

    async def check_token(self, user_id: str, token: str | None) -> bool:
        """Whether `token` is the user's token (compared in constant time)."""
        if not token or not storable(token):  # a header with bytes that are not UTF-8 is no token
            return False
        rows = await self._reader.execute_fetchall("SELECT token_hash FROM users WHERE id = ?", (user_id,))
        return bool(rows) and hmac.compare_digest(rows[0][0], hash_token(token))

    async def member_with_token(self, room_id: str, token: str | None) -> str | None:
        """The id of the room's member whose token this is, or None."""
        if not token or not storable(token):
            return None
        # Looked up by its hash, not compared in constant time: the time tells nothing of a
        # token that is not known, as SHA-256 hashes of guesses share no prefix with it.
        rows = await self._reader.execute_fetchall(
            """SELECT u.id FROM users u JOIN memberships m ON m.user_id = u.id AND m.room_id = ?
               WHERE u.token_hash = ?""", (room_id, hash_token(token)))
        return rows[0][0] if rows else None

    async def room_name(self, room_id: str) -> str | None:
        rows = await self._reader.execute_fetchall("SELECT name FROM rooms WHERE id = ?", (room_id,))
        return rows[0][0] if rows else None

    async def get_room(self, room_id: str) -> dict[str, Any] | None:
        rooms = await self._rooms("WHERE id = ?", (room_id,), 1)
        return rooms[0] if rooms else None

    async def list_rooms(self, limit: int, after: str | None = None) -> list[dict[str, Any]]:
        """Up to `limit` rooms in creation order, after the room with id `after` (a page's last)."""
        if after is None:
            return await self._rooms("", (), limit)
        return await self._rooms(
            "WHERE (created_at, rowid) > (SELECT created_at, rowid FROM rooms WHERE id = ?)", (after,), limit)

    async def _rooms(self, where: str, params: tuple[Any, ...], limit: int) -> list[dict[str, Any]]:
        rows = await self._reader.execute_fetchall(
            f"""SELECT r.id, r.name, r.created_at, m.user_id
                FROM (SELECT rowid AS position, id, name, created_at FROM rooms {where}
                      ORDER BY created_at, rowid LIMIT ?) r
                LEFT JOIN memberships m ON m.room_id = r.id
                ORDER BY r.created_at, r.position, m.joined_at, m.user_id""", (*params, limit))
        rooms: dict[str, dict[str, Any]] = {}
        for room_id, name, created_at, member in rows:
            room = rooms.setdefault(room_id, {"id": room_id, "name": name, "created_at": created_at, "users": []})
            if member is not None:
                room["users"].append(member)
        return list(rooms.values())

    async def messages(self, room_id: str, limit: int, before: int | None = None,
                       after: int | None = None) -> list[dict[str, Any]]:
        """A page of a room's messages, oldest first: the last `limit`, or those just before or after a seq."""
        if after is not None:
            sql, params = SELECT_MESSAGES.format(where="AND m.seq > ?", order="ASC"), (room_id, after, limit)
        elif before is not None:
            sql, params = SELECT_MESSAGES.format(where="AND m.seq < ?", order="DESC"), (room_id, before, limit)
        else:
            sql, params = SELECT_MESSAGES.format(where="", order="DESC"), (room_id, limit)
        rows = await self._reader.execute_fetchall(sql, params)
        page = [_message(row) for row in rows]
        return page if after is not None else page[::-1]

    async def counts(self) -> dict[str, int]:
        """How many users, rooms and messages are stored (cheap even for millions of messages)."""
        rows = await self._reader.execute_fetchall(
            """SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM rooms),
                      (SELECT coalesce(sum((SELECT max(seq) FROM messages m WHERE m.room_id = r.id)), 0)
                       FROM rooms r)""")
        users, rooms, messages = rows[0]
        return {"users": users, "rooms": rooms, "messages": messages}


def acceptable_id(text: str) -> bool:
    """Whether auto-creation may take this id from a client: short, and no control character,
    which would let it write lines of its own into the log."""
    return 0 < len(text) <= MAX_ID and text.isprintable()


def storable(text: str) -> bool:
    """Whether both stores can hold the text: it has a UTF-8 form, which SQLite needs (JSON's "\\ud800"
    escapes make strings without one), and no NUL character, which PostgreSQL's text cannot hold."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _runs_of_one_kind(writes: list[_Write]) -> list[list[_Write]]:
    """Consecutive writes with the same INSERT, MAX_ROWS_PER_INSERT at most: each run becomes one statement."""
    runs = []
    for _, same_kind in itertools.groupby(writes, key=lambda write: write.sql):
        run = list(same_kind)
        runs.extend(run[start:start + MAX_ROWS_PER_INSERT] for start in range(0, len(run), MAX_ROWS_PER_INSERT))
    return runs


@functools.lru_cache(maxsize=64)
def _insert_rows(insert: str, width: int, rows: int) -> str:
    """`INSERT ... VALUES` completed with `rows` groups of `width` placeholders."""
    group = f"({', '.join('?' * width)})"
    return f"{insert} {', '.join([group] * rows)}"


def _user(row: Any) -> dict[str, Any]:
    return {"id": row[0], "username": row[1], "joined_at": row[2]}


def _message(row: Any) -> dict[str, Any]:
    return {"id": row[0], "seq": row[1], "room_id": row[2], "user_id": row[3], "username": row[4],
            "content": row[5], "timestamp": row[6]}


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain hash is enough; a slow password hash would add nothing.
    return hashlib.sha256(token.encode()).hexdigest()


def _own(path: Path) -> int:
    """Take the file for this process alone: the writer numbers each room's messages from its own
    memory, so a second server on the same file would give out the same seqs. The lock (flock) is
    not one of SQLite's (fcntl), so the sqlite3 shell and backups still open the file as usual."""
    owner = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(owner)
        raise DatabaseInUse(f"another server process is using {path}: one SQLite file serves one process; "
                            "to run several, use PostgreSQL (DATABASE_URL)") from None
    return owner


def _connect_writer(path: Path) -> sqlite3.Connection:
    """The connection every write goes through, used on the event loop's thread."""
    # Autocommit: every statement is its own transaction (migrations say BEGIN themselves).
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # Start-up may wait for another process's lock; after that, a commit never does (see _commit_queue).
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        # WAL: readers never wait for the writer. NORMAL: a commit survives a crash of
        # this process (kill -9); only a power loss or OS crash may lose the last ones.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # SQLite would copy the WAL into the database inside whichever commit crosses
        # 1000 pages, holding up the event loop for an fsync; the checkpointer does it
        # on its own connection instead (see _checkpoint_regularly).
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        # When the WAL starts over from its beginning, its file is cut back to this size.
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    except BaseException:
        conn.close()
        raise
    return conn


async def _connect(path: Path) -> aiosqlite.Connection:
    """A connection for reads (and checkpoints), used on a thread of its own."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    await conn.execute("PRAGMA query_only = ON")
    return conn


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """The numbered `.sql` files of a migrations folder, in order."""
    files = []
    for path in directory.iterdir():
        match = MIGRATION_NAME.match(path.name)
        if match:
            files.append((int(match.group(1)), path))
    files.sort()
    # Two files of one number: the second would be skipped silently, as user_version is already past it.
    for (number, first), (next_number, second) in zip(files, files[1:]):
        if number == next_number:
            raise MigrationError(f"migrations {first.name} and {second.name} have the same number")
    return files


def migrate(conn: sqlite3.Connection) -> int:
    """Apply each migration newer than `PRAGMA user_version`, each in its own transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    files = migration_files()
    latest = files[-1][0] if files else 0
    if version > latest:
        raise MigrationError(f"the database is at schema version {version}, newer than this server's {latest}")
    for number, path in files:
        if number <= version:
            continue
        try:
            # Pragmas take no parameters; `number` is an int from the file name.
            conn.executescript(f"BEGIN;\n{path.read_text()}\nPRAGMA user_version = {number};\nCOMMIT;")
        except sqlite3.Error as exc:
            conn.rollback()
            raise MigrationError(f"migration {path.name} failed: {exc}") from None
        log.info("Applied migration %s", path.name)
        version = number
    return version


db_key = web.AppKey("chat.db", Database)
