"""Rooms full of clients, shared by the fan-out and latency scenarios."""

import time
from array import array

from bench import api, servers, wsload
from bench.context import Context
from bench.procstat import CpuMeter
from bench.servers import Server
from bench.stats import latency_summary_ms, merge_latencies
from bench.workers import WorkerGroup, split


def plan_rooms(server: Server, rooms: int, clients: int, senders: int, expected: int) -> list[wsload.SocketPlan]:
    users = api.create_users(server.url, rooms * clients)
    room_ids = api.create_rooms(server.url, rooms)
    plans, sender_number = [], 0
    for r, room_id in enumerate(room_ids):
        for c in range(clients):
            sender = -1
            if c < senders:
                sender, sender_number = sender_number, sender_number + 1
            plans.append(wsload.SocketPlan(room_id, users[r * clients + c], expected, sender))
    return plans


def latest_seq(server: Server, room_id: str) -> int:
    page = servers.get_json(f"{server.url}/rooms/{room_id}/messages?limit=1")
    return page[-1]["seq"] if page else 0


def drive(ctx: Context, server: Server, plans: list[wsload.SocketPlan], label: str,
          **job_fields) -> tuple[dict, array]:
    """Connect every planned socket, run the traffic, and measure the server over it."""
    jobs = [wsload.WsJob(port=server.port, source_ip=ctx.next_source_ip(), sockets=part, **job_fields)
            for part in split(plans, ctx.sizes.ws_workers)]
    expected = sum(plan.expected for plan in plans)
    ctx.progress.stage(f"{label}: connecting {len(plans)} sockets")
    with WorkerGroup(wsload.worker_main, jobs, ctx.progress) as group:
        group.gather("ready", timeout=120, total=len(plans))
        time.sleep(0.5)  # the last user_joined broadcasts settle before the meter starts
        meter = CpuMeter(server.pid, count_segments=True)
        ctx.progress.stage(f"{label}: deliveries")
        meter.start()
        began = time.monotonic()
        group.send_all("go", time.monotonic_ns())
        results = group.gather("done", timeout=jobs[0].deadline_s + 30, total=expected)
        wall = time.monotonic() - began
        cpu = meter.stop()
        stored = {room: latest_seq(server, room) for room in {plan.room_id for plan in plans}}
    unique = sum(r["unique"] for r in results)
    messages = sum(r["sent"] for r in results)
    summary = {
        "sockets": len(plans),
        "messages": messages,
        "deliveries": unique,
        "lost": expected - unique,
        "duplicated": sum(r["duplicates"] for r in results),
        "out_of_order": sum(r["order_violations"] for r in results),
        "closed_by_server": sum(r["closed_by_server"] for r in results),
        # Each room is new, so its latest stored seq is the number of messages it got.
        "history_complete": all(stored[plan.room_id] == plan.expected for plan in plans),
        "wall_s": wall,
        "server_cpu_s": cpu,
        "server_cpu_us_per_delivery": cpu / unique * 1e6 if unique else float("nan"),
        "server_tcp_segments_per_delivery": meter.segments / unique if unique and meter.segments else None,
        "server_file_writes_per_message": meter.writes / messages if messages else float("nan"),
        "messages_per_s": messages / wall if wall else 0.0,
        "deliveries_per_s": unique / wall if wall else 0.0,
        "errors": [e for r in results for e in r["errors"]][:5],
    }
    latencies = merge_latencies(r["latencies_us"] for r in results)
    summary.update({f"latency_{key}": value for key, value in latency_summary_ms(latencies).items()})
    return summary, latencies
