"""Stored before sent: kill -9 the server in the middle of a run, restart it, and look for
every message that any client had received. Only the server under test keeps messages."""

import time

from bench import servers, wsload
from bench.context import Context
from bench.scenarios.rooms import latest_seq, plan_rooms
from bench.workers import WorkerGroup, split

ROOMS, CLIENTS, SENDERS = 10, 5, 2


def run_once(ctx: Context) -> dict:
    sizes = ctx.sizes
    rate = sizes.durability_rate
    per_sender = int(rate / (ROOMS * SENDERS) * sizes.durability_duration_s)
    db_path = ctx.workdir / "durability.db"
    ctx.progress.stage(f"durability: kill -9 after {sizes.durability_kill_after_s} s at {rate:.0f} msg/s")
    with servers.running(servers.OURS, ctx, db_path=db_path) as server:
        plans = plan_rooms(servers.Cluster(servers.OURS, [server]), ROOMS, CLIENTS, SENDERS,
                           expected=SENDERS * per_sender)
        jobs = [wsload.WsJob(mode="rate", ports=(server.port,), source_ip=ctx.next_source_ip(), sockets=part,
                             messages_per_sender=per_sender, rate_per_sender=rate / (ROOMS * SENDERS),
                             senders_in_run=ROOMS * SENDERS, deadline_s=sizes.durability_duration_s + 30)
                for part in split(plans, sizes.ws_workers)]
        with WorkerGroup(wsload.worker_main, jobs) as group:
            group.gather("ready", timeout=60)
            group.send_all("go", time.monotonic_ns())
            time.sleep(sizes.durability_kill_after_s)
            servers.kill_hard(server)
            results = group.gather("done", timeout=sizes.durability_duration_s + 60)
    seen: dict[str, int] = {}
    for result in results:
        for room, seq in result["max_seq_by_room"].items():
            seen[room] = max(seen.get(room, 0), seq)
    with servers.running(servers.OURS, ctx, db_path=db_path) as restarted:
        stored = {room: latest_seq(restarted, room) for room in seen}
    # Seqs are given 1, 2, 3, ... in a room, so the latest stored seq covers every lower one.
    missing = sum(max(0, seen[room] - stored[room]) for room in seen)
    delivered = sum(seen.values())
    return {"delivered_max_seq_total": delivered, "stored_max_seq_total": sum(stored.values()),
            "missing": missing, "killed_mid_run": delivered < ROOMS * SENDERS * per_sender,
            "pass": missing == 0 and delivered > 0}
