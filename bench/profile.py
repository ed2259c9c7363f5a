"""Where the server's CPU goes in one scenario: CPU per thread from /proc, and py-spy samples.

    python -m bench.profile fanout --shape 10x20       # or 1x200
    python -m bench.profile latency --rate 2300        # the fixed-rate scenario, 10x20
    python -m bench.profile get                        # GET /rooms/{id}/messages?limit=50
    python -m bench.profile post                       # POST /users
    python -m bench.profile idle --sockets 3000        # Python memory per idle socket, by line
    python -m bench.profile fanout --kind ours-pg×3    # PostgreSQL in three processes: all of them sampled

py-spy is optional (`pip install py-spy`; it is no dependency of the project):
without it only the per-thread split is shown. Not part of the benchmark run.
"""

import argparse
import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

from bench import api, pgserver, restload, servers, wsload
from bench.config import FULL
from bench.context import Context
from bench.limits import raise_open_files
from bench.procstat import CLOCK_TICKS
from bench.progress import Progress
from bench.scenarios.rest import HISTORY_LENGTH, measure
from bench.scenarios.rooms import drive, plan_rooms
from bench.workers import WorkerGroup, split


def thread_ticks(pid: int) -> dict[str, tuple[int, int]]:
    """User and system CPU ticks of each thread of the process."""
    ticks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[f"{task.name} {name}"] = (int(fields[11]), int(fields[12]))
    return ticks


def summarize_samples(raws: list[Path], top: int) -> list[str]:
    """Self and inclusive shares of py-spy's collapsed stacks (of all the processes), line numbers folded."""
    own, inclusive, total = collections.Counter(), collections.Counter(), 0
    for line in (line for raw in raws for line in raw.read_text().splitlines()):
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    # py-spy counts a thread waiting in select() or in aiosqlite's queue as busy: compare the other lines.
    lines = [f"{total} samples; self:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top * 2)]
    return lines


def workload(ctx: Context, cluster: servers.Cluster, args: argparse.Namespace) -> tuple[int, str]:
    """Runs the chosen traffic; returns the units of work done and their name."""
    server = cluster.servers[0]
    if args.what == "fanout":
        rooms, clients = (int(n) for n in args.shape.split("x"))
        plans = plan_rooms(cluster, rooms, clients, 2, 2 * args.messages)
        summary, _ = drive(ctx, cluster, plans, "profile", mode="fanout",
                           messages_per_sender=args.messages,
                           window=ctx.sizes.window, deadline_s=300)
        return summary["deliveries"], "deliveries"
    if args.what == "latency":
        rooms, clients = (int(n) for n in args.shape.split("x"))
        senders = rooms * ctx.sizes.senders_per_room
        per_sender = int(args.rate / senders * ctx.sizes.latency_duration_s)
        plans = plan_rooms(cluster, rooms, clients, ctx.sizes.senders_per_room,
                           ctx.sizes.senders_per_room * per_sender)
        summary, _ = drive(ctx, cluster, plans, "profile", mode="rate",
                           messages_per_sender=per_sender,
                           rate_per_sender=args.rate / senders, senders_in_run=senders,
                           warmup_s=ctx.sizes.latency_warmup_s, deadline_s=ctx.sizes.latency_duration_s + 60)
        return summary["deliveries"], "deliveries"
    common = dict(port=server.port, connections=16, duration_s=args.seconds)
    if args.what == "get":
        user = api.create_users(server.url, 1)[0]
        room = api.create_rooms(server.url, 1)[0]
        api.send_history(server.port, room, user, HISTORY_LENGTH)
        jobs = [restload.RestJob(route="get", path=f"/rooms/{room}/messages?limit=50", **common) for _ in range(2)]
    else:
        jobs = [restload.RestJob(route="create_user", name_prefix=f"profile-{i}", **common) for i in range(2)]
    return measure(ctx, server, "profile", jobs)["requests"], "requests"


def profile_memory(args: argparse.Namespace) -> int:
    """Python allocations that each idle socket keeps alive, by source line (tracemalloc in the server)."""
    room_size = 20
    with tempfile.TemporaryDirectory(prefix="chat-profile-") as workdir:
        ctx = Context(replace(FULL, repeats=1), Path(workdir), Progress())
        if args.server_tree:
            ctx.server_root = args.server_tree.resolve()
        prefix = Path(workdir) / "snapshot"
        with servers.running(args.kind, ctx, snapshots=prefix) as server:
            users = api.create_users(server.url, room_size)
            rooms = api.create_rooms(server.url, -(-args.sockets // room_size))
            plans = [wsload.SocketPlan(room, user) for room in rooms for user in users][: args.sockets]
            time.sleep(1.0)
            os.kill(server.pid, signal.SIGUSR1)
            jobs = [wsload.WsJob(mode="idle", ports=(server.port,), source_ip=ctx.next_source_ip(), sockets=part,
                                 connect_concurrency=16) for part in split(plans, 2)]
            with WorkerGroup(wsload.worker_main, jobs) as group:
                group.gather("ready", timeout=300)
                time.sleep(2.0)
                os.kill(server.pid, signal.SIGUSR1)
                time.sleep(3.0)  # the snapshot is written while the sockets are still open
        before = tracemalloc.Snapshot.load(f"{prefix}.1")
        after = tracemalloc.Snapshot.load(f"{prefix}.2")
    stats = after.compare_to(before, "lineno")
    print(f"{args.kind}: {sum(s.size_diff for s in stats) / args.sockets / 1024:.2f} KB of Python objects "
          f"per idle socket (RSS also holds the allocator's slack and tracemalloc's own); by line:")
    for stat in stats[: args.top]:
        frame = stat.traceback[0]
        print(f"  {stat.size_diff / args.sockets:7.0f} B  {stat.count_diff / args.sockets:5.1f} objects  "
              f"{frame.filename}:{frame.lineno}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("fanout", "latency", "get", "post", "idle"))
    parser.add_argument("--sockets", type=int, default=3000, help="idle sockets")
    parser.add_argument("--kind", choices=(servers.OURS, *servers.POSTGRES_KINDS, servers.BASELINE, servers.NAIVE),
                        default=servers.OURS)
    parser.add_argument("--shape", default="10x20", help="fan-out rooms x clients")
    parser.add_argument("--messages", type=int, default=500, help="fan-out messages per sender")
    parser.add_argument("--rate", type=float, default=2300.0, help="latency: messages per second offered")
    parser.add_argument("--seconds", type=float, default=5.0, help="REST duration")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="path of py-spy, if not on PATH")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--gil", action="store_true",
                        help="sample only threads holding the GIL: Python's own work, not system calls or waiting")
    parser.add_argument("--server-tree", type=Path, help="checkout whose run.py to profile (default: this one)")
    args = parser.parse_args(argv)
    raise_open_files()
    if args.what == "idle":
        return profile_memory(args)
    with tempfile.TemporaryDirectory(prefix="chat-profile-") as workdir, contextlib.ExitStack() as stack:
        ctx = Context(replace(FULL, repeats=1), Path(workdir), Progress())
        if args.server_tree:
            ctx.server_root = args.server_tree.resolve()
        if args.kind in servers.POSTGRES_KINDS:
            ctx.postgres = pgserver.start_durable()
            stack.callback(ctx.postgres.stop)
        cluster = stack.enter_context(servers.running_cluster(args.kind, ctx))
        raw = [Path(workdir) / f"stacks-{pid}.txt" for pid in cluster.pids]
        spies = []
        if args.py_spy:
            spies = [subprocess.Popen([args.py_spy, "record", "--pid", str(pid), "--rate", "200",
                                       "--format", "raw", "--output", str(path), *(["--gil"] if args.gil else [])],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for pid, path in zip(cluster.pids, raw)]
            time.sleep(1.0)  # py-spy attaches
        before = {pid: thread_ticks(pid) for pid in cluster.pids}
        units, unit = workload(ctx, cluster, args)
        after = {pid: thread_ticks(pid) for pid in cluster.pids}
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        ctx.progress.finish()
        print(f"{args.kind} {args.what}: {units:,} {unit}; server CPU per one, by thread:")
        for pid in cluster.pids:
            for thread, (user, system) in after[pid].items():
                user_before, system_before = before[pid].get(thread, (0, 0))
                per_unit = [(ticks / CLOCK_TICKS / units * 1e6)
                            for ticks in (user - user_before, system - system_before)]
                if sum(per_unit):
                    main_thread = " (event loop)" if thread.split()[0] == str(pid) else ""
                    print(f"  {sum(per_unit):8.2f} µs = {per_unit[0]:.2f} user + {per_unit[1]:.2f} system"
                          f"  thread {thread}{main_thread}")
        if any(path.exists() for path in raw):
            print("\n".join(summarize_samples([path for path in raw if path.exists()], args.top)))
        elif not args.py_spy:
            print("(py-spy not found: no samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
