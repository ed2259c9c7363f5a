"""Rooms full of clients, shared by the fan-out and latency scenarios."""

import time
from array import array

from bench import api, servers, wsload
from bench.context import Context
from bench.procstat import CpuMeter
from bench.servers import Cluster, Server
from bench.stats import latency_summary_ms, merge_latencies
from bench.workers import WorkerGroup, split


def plan_rooms(cluster: Cluster, rooms: int, clients: int, senders: int, expected: int) -> list[wsload.SocketPlan]:
    """Users and rooms made through the cluster's first process; sockets spread round robin over its
    processes, counted across rooms, so that every process has senders and the receivers of a room sit
    on every one; or, for the kinds that keep rooms together, each room's sockets on one process."""
    server, processes = cluster.servers[0], len(cluster.servers)
    rooms_together = cluster.kind in servers.ROOMS_ON_ONE_PROCESS
    users = api.create_users(server.url, rooms * clients)
    room_ids = api.create_rooms(server.url, rooms)
    plans, sender_number = [], 0
    for r, room_id in enumerate(room_ids):
        for c in range(clients):
            sender = -1
            if c < senders:
                sender, sender_number = sender_number, sender_number + 1
            index = r * clients + c
            process = r if rooms_together else index
            plans.append(wsload.SocketPlan(room_id, users[index], expected, sender, server=process % processes))
    return plans


def latest_seq(server: Server, room_id: str) -> int:
    page = servers.get_json(f"{server.url}/rooms/{room_id}/messages?limit=1")
    return page[-1]["seq"] if page else 0


def drive(ctx: Context, cluster: Cluster, plans: list[wsload.SocketPlan], label: str,
          **job_fields) -> tuple[dict, array]:
    """Connect every planned socket, run the traffic, and measure the server processes (and PostgreSQL) over it."""
    ports = tuple(server.port for server in cluster.servers)
    jobs = [wsload.WsJob(ports=ports, source_ip=ctx.next_source_ip(), sockets=part, **job_fields)
            for part in split(plans, ctx.sizes.ws_workers)]
    expected = sum(plan.expected for plan in plans)
    ctx.progress.stage(f"{label}: connecting {len(plans)} sockets")
    with WorkerGroup(wsload.worker_main, jobs, ctx.progress) as group:
        group.gather("ready", timeout=120, total=len(plans))
        time.sleep(0.5)  # the last user_joined broadcasts settle before the meter starts
        meter = CpuMeter(cluster.pids, count_segments=True)
        postgres = CpuMeter(cluster.postgres_pid) if cluster.postgres_pid else None
        ctx.progress.stage(f"{label}: deliveries")
        meter.start()
        if postgres:
            postgres.start()
        began = time.monotonic()
        group.send_all("go", time.monotonic_ns())
        results = group.gather("done", timeout=jobs[0].deadline_s + 30, total=expected)
        wall = time.monotonic() - began
        cpu = meter.stop()
        postgres_cpu = postgres.stop() if postgres else None
        first = cluster.servers[0]
        stored = {room: latest_seq(first, room) for room in {plan.room_id for plan in plans}}
    unique = sum(r["unique"] for r in results)
    messages = sum(r["sent"] for r in results)
    summary = {
        "processes": len(cluster.servers),
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
        # Summed over the server processes; PostgreSQL's own processes apart, in the next measure.
        "server_cpu_us_per_delivery": cpu / unique * 1e6 if unique else float("nan"),
        "postgres_cpu_us_per_delivery": postgres_cpu / unique * 1e6 if unique and postgres else None,
        "server_tcp_segments_per_delivery": meter.segments / unique if unique and meter.segments else None,
        "server_file_writes_per_message": meter.writes / messages if messages else float("nan"),
        "messages_per_s": messages / wall if wall else 0.0,
        "deliveries_per_s": unique / wall if wall else 0.0,
        "errors": [e for r in results for e in r["errors"]][:5],
    }
    latencies = merge_latencies(r["latencies_us"] for r in results)
    summary.update({f"latency_{key}": value for key, value in latency_summary_ms(latencies).items()})
    if len(cluster.servers) > 1:
        cross = merge_latencies(r["cross_latencies_us"] for r in results)
        summary.update({f"cross_latency_{key}": value for key, value in latency_summary_ms(cross).items()})
    return summary, latencies
