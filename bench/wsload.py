"""The WebSocket side of the load generator: one process's share of the chat clients.

Modes:
- fanout: each sender keeps at most `window` of its messages unanswered (it
  sees its own message come back), so the offered load follows the server and
  no queue grows without bound;
- rate: each sender sends at a fixed rate, whatever the server does, and
  receivers record the latency of every message;
- idle: sockets connect and sit.
Every socket checks what it gets: each seq once, in increasing order, and all
of the room's messages. Sockets may be spread over several server processes
(one port each); a message names the process its sender used, so that the
latency of deliveries from one process to another is also kept apart.
"""

import asyncio
import gc
import json
import time
import traceback
from array import array
from dataclasses import dataclass, field

from bench import wsclient
from bench.limits import raise_open_files


@dataclass
class SocketPlan:
    room_id: str
    user_id: str
    expected: int = 0  # chat messages this socket must receive
    sender: int = -1  # a number unique in the run, or -1 for a socket that only listens
    server: int = 0  # which of the job's ports (server processes) this socket connects to


@dataclass
class WsJob:
    mode: str  # "fanout" | "rate" | "idle"
    ports: tuple[int, ...]  # one per server process; a socket's plan says which
    source_ip: str
    sockets: list[SocketPlan]
    messages_per_sender: int = 0
    window: int = 10
    rate_per_sender: float = 0.0
    senders_in_run: int = 1  # spreads the senders' send times evenly over a period
    warmup_s: float = 0.0
    deadline_s: float = 60.0
    connect_concurrency: int = 50
    host: str = "127.0.0.1"


@dataclass
class Tally:
    received: int = 0
    duplicates: int = 0
    order_violations: int = 0
    latencies_us: array = field(default_factory=lambda: array("I"))
    cross_latencies_us: array = field(default_factory=lambda: array("I"))  # sent through another process
    errors: list[str] = field(default_factory=list)
    measure_from_ns: int = 1 << 62  # latencies of messages sent before this are warm-up
    incomplete: int = 0  # sockets still waiting for some of their room's messages
    all_seen: asyncio.Event = field(default_factory=asyncio.Event)

    def one_complete(self) -> None:
        self.incomplete -= 1
        if self.incomplete == 0:
            self.all_seen.set()

    def error(self, text: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(text)


class Peer:
    """One chat client: its socket, what it sent and what it has seen."""

    def __init__(self, plan: SocketPlan, tally: Tally, window: int, per_sender: int) -> None:
        self.plan = plan
        self.tally = tally
        self.window = window
        self.per_sender = per_sender
        self.client: wsclient.WSClient | None = None
        self.joined = asyncio.get_running_loop().create_future()
        self.seen: set[int] = set()
        self.last_seq = 0
        self.sent = 0
        self.acked = 0
        self.pumping = False  # fanout: sending is driven by this peer's own echoes

    def on_text(self, payload: bytes) -> None:
        frame = json.loads(payload)
        kind = frame.get("type")
        if kind == "message":
            self.on_message(frame)
        elif kind == "user_joined":
            if frame.get("user_id") == self.plan.user_id and not self.joined.done():
                self.joined.set_result(None)
        elif kind == "error":
            self.tally.error(f"error frame: {frame.get('message')}")

    def on_message(self, frame: dict) -> None:
        now = time.monotonic_ns()
        tally = self.tally
        tally.received += 1
        seq = frame["seq"]
        if seq in self.seen:
            tally.duplicates += 1
            return
        if seq < self.last_seq:
            tally.order_violations += 1
        else:
            self.last_seq = seq
        self.seen.add(seq)
        if len(self.seen) == self.plan.expected:
            tally.one_complete()
        sender, number, sent_ns, via = (int(part) for part in frame["content"].split())
        if sent_ns >= tally.measure_from_ns:
            latency = min((now - sent_ns) // 1000, 0xFFFFFFFF)
            tally.latencies_us.append(latency)
            if via != self.plan.server:
                tally.cross_latencies_us.append(latency)
        if sender == self.plan.sender:
            self.acked = max(self.acked, number + 1)
            if self.pumping:
                self.pump()

    def send_next(self) -> None:
        content = f"{self.plan.sender} {self.sent} {time.monotonic_ns()} {self.plan.server}"
        self.client.send_text(json.dumps({"content": content}))
        self.sent += 1

    def pump(self) -> None:
        while self.sent < self.per_sender and self.sent - self.acked < self.window:
            self.send_next()


def max_seq_by_room(peers: list[Peer]) -> dict[str, int]:
    """The highest seq any socket of this worker saw in each room."""
    found: dict[str, int] = {}
    for peer in peers:
        found[peer.plan.room_id] = max(found.get(peer.plan.room_id, 0), peer.last_seq)
    return found


async def open_peer(job: WsJob, peer: Peer, gate: asyncio.Semaphore) -> None:
    path = f"/ws/{peer.plan.room_id}/{peer.plan.user_id}"
    async with gate:
        peer.client = await wsclient.connect(job.host, job.ports[peer.plan.server], path, peer.on_text, job.source_ip)
        try:
            await asyncio.wait_for(asyncio.shield(peer.joined), 30)
        except asyncio.TimeoutError:
            raise RuntimeError(f"no user_joined on {path} (close code {peer.client.close_code})") from None


async def publish_counter(counters, index: int, count) -> None:
    while True:
        counters[index] = count()
        await asyncio.sleep(0.2)


async def send_at_rate(job: WsJob, senders: list[Peer], start_ns: int) -> None:
    """Open loop: each sender's n-th message leaves at start + (n + phase) / rate."""
    rate = job.rate_per_sender
    phases = {id(p): p.plan.sender / job.senders_in_run for p in senders}
    while any(p.sent < p.per_sender for p in senders):
        elapsed = (time.monotonic_ns() - start_ns) / 1e9
        for peer in senders:
            due = min(peer.per_sender, int(elapsed * rate - phases[id(peer)]) + 1)
            while peer.sent < due:
                peer.send_next()
        await asyncio.sleep(0.001)


async def run_traffic(job: WsJob, peers: list[Peer], tally: Tally, start_ns: int) -> None:
    senders = [p for p in peers if p.plan.sender >= 0]
    tally.measure_from_ns = start_ns + int(job.warmup_s * 1e9)
    sending = None
    if job.mode == "fanout":
        for peer in senders:
            peer.pumping = True
            peer.pump()
    elif job.mode == "rate":
        sending = asyncio.create_task(send_at_rate(job, senders, start_ns))
    deadline = time.monotonic() + job.deadline_s
    while not tally.all_seen.is_set() and time.monotonic() < deadline:
        try:
            await asyncio.wait_for(tally.all_seen.wait(), 0.1)
        except asyncio.TimeoutError:
            if any(p.client.closed for p in peers):
                tally.error("a socket was closed by the server during the run")
                break
    if sending:
        sending.cancel()


async def serve(job: WsJob, pipe, counters, index: int) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    peers = [Peer(plan, tally, job.window, job.messages_per_sender) for plan in job.sockets]
    tally.incomplete = sum(plan.expected > 0 for plan in job.sockets)
    if tally.incomplete == 0:
        tally.all_seen.set()
    gate = asyncio.Semaphore(job.connect_concurrency)
    began = time.monotonic()
    opening = [asyncio.create_task(open_peer(job, peer, gate)) for peer in peers]
    publisher = asyncio.create_task(publish_counter(counters, index, lambda: sum(p.joined.done() for p in peers)))
    await asyncio.gather(*opening)
    publisher.cancel()
    pipe.send(("ready", {"sockets": len(peers), "seconds": time.monotonic() - began}))
    command = await loop.run_in_executor(None, pipe.recv)
    if command[0] == "go":
        publisher = asyncio.create_task(publish_counter(counters, index, lambda: tally.received))
        # No collector pauses in the generator while it times the server; a run's garbage is bounded.
        gc.collect()
        gc.disable()
        try:
            await run_traffic(job, peers, tally, start_ns=command[1])
        finally:
            gc.enable()
        publisher.cancel()
        counters[index] = tally.received
        pipe.send(("done", {
            "sockets": len(peers),
            "expected": sum(p.plan.expected for p in peers),
            "unique": sum(len(p.seen) for p in peers),
            "received": tally.received,
            "duplicates": tally.duplicates,
            "order_violations": tally.order_violations,
            "sent": sum(p.sent for p in peers),
            "closed_by_server": sum(p.client.close_code is not None for p in peers),
            "max_seq_by_room": max_seq_by_room(peers),
            "errors": tally.errors,
            "latencies_us": tally.latencies_us.tobytes(),
            "cross_latencies_us": tally.cross_latencies_us.tobytes(),
        }))
        command = await loop.run_in_executor(None, pipe.recv)
    for peer in peers:
        if peer.client:
            peer.client.close()
    await asyncio.sleep(0.1)  # let the close frames leave before the process ends


def worker_main(job: WsJob, pipe, counters, index: int) -> None:
    raise_open_files()
    try:
        asyncio.run(serve(job, pipe, counters, index))
    except BaseException:
        pipe.send(("error", traceback.format_exc(limit=4)))
