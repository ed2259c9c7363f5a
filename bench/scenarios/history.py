"""History at scale: one room of a million messages; server time for the last page, and start-up time.

The database is the server's own: the server creates the schema (its migrations)
and one real message, then sqlite3 copies that row a million times with new
seq, id and content, as a year of chat would have left it.
"""

import sqlite3
import uuid
from pathlib import Path

from bench import api, restload, servers
from bench.context import Context
from bench.procstat import CpuMeter
from bench.stats import latency_summary_ms, merge_latencies
from bench.workers import WorkerGroup

PAGE = 50


def build_database(ctx: Context, path: Path, messages: int, content: str | None = None) -> str:
    """A room with `messages` messages (each `content`, or numbered) in a database the server created;
    returns the room id."""
    ctx.progress.stage(f"history: building a room of {messages:,} messages")
    with servers.running(servers.OURS, ctx, db_path=path) as server:
        user = api.create_users(server.url, 1, prefix="history")[0]
        room = api.create_rooms(server.url, 1, prefix="history")[0]
        api.send_history(server.port, room, user, 1)
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(messages)")]
        template = dict(zip(columns, conn.execute(f"SELECT {', '.join(columns)} FROM messages").fetchone()))

        def rows():
            for seq in range(2, messages + 1):
                row = {**template, "seq": seq, "id": str(uuid.uuid4()), "content": content or f"history message {seq}"}
                yield tuple(row[c] for c in columns)

        marks = ", ".join("?" for _ in columns)
        conn.executemany(f"INSERT INTO messages ({', '.join(columns)}) VALUES ({marks})", rows())
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return room


def page_is_right(server: servers.Server, path: str, last_seq: int) -> bool:
    page = servers.get_json(f"{server.url}{path}")
    return [m["seq"] for m in page] == list(range(last_seq - PAGE + 1, last_seq + 1))


def timed_gets(ctx: Context, server: servers.Server, path: str, count: int) -> dict:
    """Sequential requests on one connection: server CPU per request, and what the client waited."""
    job = restload.RestJob(route="get", port=server.port, connections=1, count=count, path=path)
    with WorkerGroup(restload.worker_main, [job], ctx.progress) as group:
        group.gather("ready", timeout=60)
        meter = CpuMeter(server.pid)
        meter.start()
        group.send_all("go", 0)
        (result,) = group.gather("done", timeout=120, total=count)
        cpu = meter.stop()
    latency = latency_summary_ms(merge_latencies([result["latencies_us"]]))
    return {"server_ms_per_page": cpu / result["requests"] * 1e3, "client_p50_ms": latency["p50_ms"],
            "client_p99_ms": latency["p99_ms"], "failed": result["failed"]}


def run_once(ctx: Context, db_path: Path, room: str) -> dict:
    sizes = ctx.sizes
    total = sizes.history_messages
    ctx.progress.stage("history: start-up on the big database")
    with servers.running(servers.OURS, ctx, db_path=db_path) as server:
        startup = server.started_in
        latest_path = f"/rooms/{room}/messages?limit={PAGE}"
        middle = total // 2
        deep_path = f"/rooms/{room}/messages?limit={PAGE}&before={middle + 1}"
        correct = page_is_right(server, latest_path, total) and page_is_right(server, deep_path, middle)
        ctx.progress.stage("history: latest page")
        latest = timed_gets(ctx, server, latest_path, sizes.history_requests)
        ctx.progress.stage("history: a page from the middle (before=)")
        deep = timed_gets(ctx, server, deep_path, sizes.history_requests)
    with servers.running(servers.BASELINE, ctx) as baseline:
        baseline_startup = baseline.started_in
    return {
        "messages_in_room": total,
        "startup_s": startup,
        "baseline_startup_s": baseline_startup,
        "pages_correct": correct,
        **{f"latest_{k}": v for k, v in latest.items()},
        **{f"middle_{k}": v for k, v in deep.items()},
    }
