"""Idle sockets: how many the server holds, and the RSS each one costs it."""

import time

from bench import api, servers, wsload
from bench.context import Context
from bench.limits import hard_open_files, sockets_a_server_can_hold
from bench.procstat import CpuMeter, rss_bytes
from bench.workers import WorkerGroup, split

# Handshakes in flight over all workers: well under aiohttp's default listen backlog
# (128), since an overflowing backlog drops connections into seconds-long SYN retries.
IDLE_CONNECTS_IN_FLIGHT = 64


def run_once(ctx: Context, kind: str) -> dict:
    sizes = ctx.sizes
    wanted = sockets_a_server_can_hold(sizes.idle_sockets)
    room_size = sizes.idle_room_size
    # Every socket is a distinct (room, user) pair, in rooms small enough that the
    # user_joined broadcasts stay cheap: join storms are not what this measures.
    rooms = -(-wanted // room_size)
    label = f"idle {wanted} sockets {kind}"
    with servers.running(kind, ctx) as server:
        ctx.progress.stage(f"{label}: creating {rooms} rooms")
        users = api.create_users(server.url, room_size)
        room_ids = api.create_rooms(server.url, rooms)
        plans = [wsload.SocketPlan(room_id, user) for room_id in room_ids for user in users][:wanted]
        jobs = [wsload.WsJob(mode="idle", ports=(server.port,), source_ip=ctx.next_source_ip(), sockets=part,
                             connect_concurrency=IDLE_CONNECTS_IN_FLIGHT // sizes.idle_workers)
                for part in split(plans, sizes.idle_workers)]
        time.sleep(1.0)
        before = rss_bytes(server.pid)
        meter = CpuMeter(server.pid)
        meter.start()
        ctx.progress.stage(f"{label}: connecting")
        with WorkerGroup(wsload.worker_main, jobs, ctx.progress) as group:
            ready = group.gather("ready", timeout=600, total=len(plans))
            connect_s = max(r["seconds"] for r in ready)  # the workers' own clocks: process start-up excluded
            time.sleep(2.0)  # the last broadcasts leave and the allocator settles
            after = rss_bytes(server.pid)
            cpu = meter.stop()
            alive = server_alive(server)
    held = sum(r["sockets"] for r in ready)
    return {
        "sockets": held,
        "sockets_wanted": sizes.idle_sockets,
        "open_files_hard_limit": hard_open_files(),
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "rss_kb_per_socket": (after - before) / held / 1024,
        "connect_s": connect_s,
        "connects_per_s": held / connect_s,
        "server_cpu_us_per_connect": cpu / held * 1e6,
        "server_answers_while_full": alive,
    }


def server_alive(server: servers.Server) -> bool:
    try:
        servers.get_json(f"{server.url}/health")
        return True
    except OSError:
        return False
