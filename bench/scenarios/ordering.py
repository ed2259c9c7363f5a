"""Ordering: the messages/s one PostgreSQL primary commits through the server's own write path.

The capacity model's first figure. No chat server takes part: server/postgres.py's
PostgresStore, opened three times as three processes would (a pool each, each
grouping the messages that arrive while its last group commits), takes
add_message() calls from 32 writers as fast as they return, into many rooms (one
each) and then all into one room, whose row every group must lock in turn.
PostgreSQL's own CPU per message is measured from /proc, so the figure can be
carried to a machine with more cores.
"""

import asyncio
import time

import asyncpg

from bench import api, servers
from bench.context import Context
from bench.procstat import CpuMeter
from server.postgres import PostgresStore

STORES = 3  # as three server processes


async def _write(url: str, rooms: list[str], user_id: str, writers: int, seconds: float) -> int:
    stores = [await PostgresStore.open(url) for _ in range(STORES)]
    deadline = time.monotonic() + seconds

    async def writer(store: PostgresStore, room_id: str) -> int:
        done = 0
        while time.monotonic() < deadline:
            await store.add_message(room_id, user_id, "ordering", f"message {done}")
            done += 1
        return done

    try:
        counts = await asyncio.gather(*(writer(stores[i % STORES], rooms[i % len(rooms)]) for i in range(writers)))
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    return sum(counts)


async def _gapless(url: str, room_id: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        count, last = await conn.fetchrow("SELECT count(*), coalesce(max(seq), 0) FROM messages WHERE room_id = $1",
                                          room_id)
    finally:
        await conn.close()
    return count == last


def _measure(ctx: Context, url: str, rooms: list[str], user_id: str) -> tuple[float, float]:
    """messages/s committed, and PostgreSQL's CPU µs per message."""
    meter = CpuMeter(ctx.postgres.pid())
    meter.start()
    began = time.monotonic()
    count = asyncio.run(_write(url, rooms, user_id, ctx.sizes.ordering_writers, ctx.sizes.ordering_seconds))
    wall = time.monotonic() - began
    cpu = meter.stop()
    return count / wall, cpu / count * 1e6 if count else float("nan")


def run_once(ctx: Context) -> dict:
    writers = ctx.sizes.ordering_writers
    url = ctx.postgres.new_database()
    # The server makes the schema, a user and the rooms, and is gone before the writers start.
    with servers.running(servers.OURS_PG, ctx, database_url=url) as server:
        user_id = api.create_users(server.url, 1, prefix="ordering")[0]
        rooms = api.create_rooms(server.url, writers, prefix="ordering")
    ctx.progress.stage(f"ordering: {writers} writers into {writers} rooms")
    many_rate, many_cpu = _measure(ctx, url, rooms, user_id)
    ctx.progress.stage(f"ordering: {writers} writers into one room")
    one_rate, one_cpu = _measure(ctx, url, rooms[:1], user_id)
    return {
        "writers": writers,
        "many_rooms_messages_per_s": many_rate,
        "many_rooms_postgres_cpu_us_per_message": many_cpu,
        "one_room_messages_per_s": one_rate,
        "one_room_postgres_cpu_us_per_message": one_cpu,
        "seq_gapless": asyncio.run(_gapless(url, rooms[0])),
    }
