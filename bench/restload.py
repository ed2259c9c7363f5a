"""The HTTP side of the load generator: keep-alive connections asking one route as fast as it answers."""

import asyncio
import json
import time
import traceback
from array import array
from dataclasses import dataclass

from bench import httpclient
from bench.limits import raise_open_files


@dataclass
class RestJob:
    route: str  # "create_user" (POST /users with a fresh name each time) | "get" (GET path)
    port: int
    connections: int
    duration_s: float = 0.0  # stop after this long ...
    count: int = 0  # ... or after this many requests
    path: str = "/health"
    name_prefix: str = "load"
    host: str = "127.0.0.1"


class RequestMaker:
    def __init__(self, job: RestJob) -> None:
        self.job = job
        self.host = f"{job.host}:{job.port}"
        self.made = 0
        self.get = httpclient.build_request("GET", job.path, self.host)

    def next(self) -> bytes:
        self.made += 1
        if self.job.route == "get":
            return self.get
        body = json.dumps({"username": f"{self.job.name_prefix}-{self.made}"}).encode()
        return httpclient.build_request("POST", "/users", self.host, body)


async def hammer(conn: httpclient.HttpConnection, maker: RequestMaker, stop_at: float,
                 latencies: array, failures: list[str]) -> None:
    """Requests one after another on one connection; a failure is kept as a sample and counted."""
    job = maker.job
    while time.monotonic() < stop_at and (not job.count or maker.made < job.count):
        began = time.monotonic_ns()
        status, body = await conn.request(maker.next())
        latencies.append((time.monotonic_ns() - began) // 1000)
        if status != 200:
            failures.append(f"{status} {body[:200]!r}")


async def publish_counter(counters, index: int, latencies: array) -> None:
    while True:
        counters[index] = len(latencies)
        await asyncio.sleep(0.2)


async def serve(job: RestJob, pipe, counters, index: int) -> None:
    loop = asyncio.get_running_loop()
    conns = [await httpclient.connect(job.host, job.port) for _ in range(job.connections)]
    pipe.send(("ready", {"connections": len(conns)}))
    command = await loop.run_in_executor(None, pipe.recv)
    if command[0] == "go":
        maker, latencies, failures = RequestMaker(job), array("I"), []
        stop_at = time.monotonic() + (job.duration_s or 3600)
        publisher = asyncio.create_task(publish_counter(counters, index, latencies))
        began = time.monotonic()
        await asyncio.gather(*(hammer(c, maker, stop_at, latencies, failures) for c in conns))
        publisher.cancel()
        counters[index] = len(latencies)
        pipe.send(("done", {"requests": len(latencies), "seconds": time.monotonic() - began,
                            "failed": len(failures), "failures": failures[:5], "latencies_us": latencies.tobytes()}))
        await loop.run_in_executor(None, pipe.recv)
    for conn in conns:
        conn.transport.close()


def worker_main(job: RestJob, pipe, counters, index: int) -> None:
    raise_open_files()
    try:
        asyncio.run(serve(job, pipe, counters, index))
    except BaseException:
        pipe.send(("error", traceback.format_exc(limit=4)))
