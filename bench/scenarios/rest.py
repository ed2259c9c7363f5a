"""REST throughput: POST /users and GET /rooms/{id}/messages?limit=50, as fast as keep-alive connections ask."""

from bench import api, restload, servers
from bench.context import Context
from bench.procstat import CpuMeter
from bench.stats import latency_summary_ms, merge_latencies
from bench.workers import WorkerGroup

HISTORY_LENGTH = 60  # more than one page, so the page is a real slice


def measure(ctx: Context, server: servers.Server, label: str, jobs: list[restload.RestJob]) -> dict:
    ctx.progress.stage(label)
    with WorkerGroup(restload.worker_main, jobs, ctx.progress) as group:
        group.gather("ready", timeout=60)
        meter = CpuMeter(server.pid)
        meter.start()
        group.send_all("go", 0)
        results = group.gather("done", timeout=(jobs[0].duration_s or 60) + 60)
        cpu = meter.stop()
    requests = sum(r["requests"] for r in results)
    seconds = max(r["seconds"] for r in results)
    latency = latency_summary_ms(merge_latencies(r["latencies_us"] for r in results))
    return {
        "requests": requests,
        "failed": sum(r["failed"] for r in results),
        "failures": [f for r in results for f in r["failures"]][:3],
        "requests_per_s": requests / seconds,
        "server_cpu_us_per_request": cpu / requests * 1e6 if requests else float("nan"),
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
    }


def run_once(ctx: Context, kind: str) -> dict:
    # Each route on a fresh server, so the reads are not timed against the writes' leftovers
    # (tens of thousands of new users, a long SQLite WAL).
    sizes = ctx.sizes
    with servers.running(kind, ctx) as server:
        common = dict(port=server.port, connections=sizes.rest_connections, duration_s=sizes.rest_duration_s)
        users = measure(ctx, server, f"POST /users {kind}", [
            restload.RestJob(route="create_user", name_prefix=f"load-{i}", **common) for i in range(sizes.rest_workers)])
    with servers.running(kind, ctx) as server:
        user = api.create_users(server.url, 1, prefix="history")[0]
        room = api.create_rooms(server.url, 1, prefix="history")[0]
        api.send_history(server.port, room, user, HISTORY_LENGTH)
        common = dict(port=server.port, connections=sizes.rest_connections, duration_s=sizes.rest_duration_s)
        history = measure(ctx, server, f"GET messages {kind}", [
            restload.RestJob(route="get", path=f"/rooms/{room}/messages?limit=50", **common)
            for _ in range(sizes.rest_workers)])
    return {**{f"post_users_{k}": v for k, v in users.items()},
            **{f"get_messages_{k}": v for k, v in history.items()}}
