"""Stalled replays (issue 11): what sockets that ask for a room's whole history and never read make the
server hold, and how the room's live messages fare meanwhile.

    python -m bench.replays                      # 200 sockets; 2,000 messages of 4,000 control characters
    python -m bench.replays --messages 100000 --size 100 --character x
    python -m bench.replays --server-tree ../old  # the same against another checkout's run.py

Each stalled socket opens /ws/ROOM/USER?since=0 with the kernel's default buffers and then reads
nothing. Meanwhile one socket sends a message every 50 ms and another times its arrival. Printed:
the server's RSS before, once it stops growing, and after the stalled sockets have closed; and the
live latency. Not part of the benchmark run.
"""

import argparse
import asyncio
import base64
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import api, servers, wsclient
from bench.config import FULL
from bench.context import Context
from bench.limits import raise_open_files
from bench.procstat import rss_bytes, steady_rss
from bench.progress import Progress
from bench.scenarios.history import build_database
from bench.stats import latency_summary_ms

MiB = 1024 * 1024
LIVE_INTERVAL_S = 0.05


def stalled_socket(port: int, path: str) -> socket.socket:
    """A WebSocket that completes its handshake and then never reads (blocking: run it in a thread)."""
    sock = socket.create_connection((servers.HOST, port), timeout=60)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {servers.HOST}:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed during the handshake: {response[:200]!r}")
        response += chunk
    if not response.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"refused: {response.splitlines()[0]!r}")
    return sock


async def live_latencies(port: int, room: str, sender: str, receiver: str, stop: asyncio.Event) -> list[int]:
    """Send a message every LIVE_INTERVAL_S until `stop`; the microseconds each took to reach the receiver."""
    latencies: list[int] = []

    def on_text(payload: bytes) -> None:
        frame = json.loads(payload)
        if frame.get("type") == "message":
            latencies.append(int((time.monotonic() - float(frame["content"])) * 1e6))

    timer = await wsclient.connect(servers.HOST, port, f"/ws/{room}/{receiver}", on_text)
    talker = await wsclient.connect(servers.HOST, port, f"/ws/{room}/{sender}", lambda _payload: None)
    try:
        while not stop.is_set():
            talker.send_text(json.dumps({"content": repr(time.monotonic())}))
            await asyncio.sleep(LIVE_INTERVAL_S)
        await asyncio.sleep(1.0)  # the last ones arrive
    finally:
        talker.close()
        timer.close()
    return latencies


async def measure(server: servers.Server, room: str, users: list[str], sockets: int, progress: Progress) -> None:
    stalled_user, sender, receiver = users
    before = rss_bytes(server.pid)
    stop = asyncio.Event()
    live = asyncio.create_task(live_latencies(server.port, room, sender, receiver, stop))
    progress.stage(f"replays: opening {sockets} stalled sockets")
    stalled = []
    for n in range(sockets):
        stalled.append(await asyncio.to_thread(stalled_socket, server.port, f"/ws/{room}/{stalled_user}?since=0"))
        progress.update(n + 1, sockets)
    progress.stage("replays: waiting for the server's memory to settle")
    held = await steady_rss(server.pid)
    stop.set()
    latencies = await live
    for sock in stalled:
        sock.close()
    await asyncio.sleep(3.0)
    after = rss_bytes(server.pid)
    progress.finish()
    live_ms = latency_summary_ms(latencies)
    print(f"{sockets} stalled replays: server RSS {before / MiB:.0f} MiB before, {held / MiB:.0f} MiB held "
          f"(+{(held - before) / MiB:.0f} MiB), {after / MiB:.0f} MiB after they closed")
    print(f"live messages meanwhile: {live_ms['samples']} timed, p50 {live_ms['p50_ms']:.2f} ms, "
          f"p99 {live_ms['p99_ms']:.2f} ms, max {live_ms['max_ms']:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=200, help="stalled sockets")
    parser.add_argument("--messages", type=int, default=2000, help="messages in the room")
    parser.add_argument("--size", type=int, default=4000, help="characters per message")
    parser.add_argument("--character", default="\x01",
                        help="what the messages are made of (default: a control character, 6 bytes in JSON)")
    parser.add_argument("--server-tree", type=Path, help="checkout whose run.py to measure (default: this one)")
    args = parser.parse_args(argv)
    raise_open_files()
    with tempfile.TemporaryDirectory(prefix="chat-replays-") as workdir:
        ctx = Context(replace(FULL, repeats=1), Path(workdir), Progress())
        if args.server_tree:
            ctx.server_root = args.server_tree.resolve()
        db_path = Path(workdir) / "replays.db"
        room = build_database(ctx, db_path, args.messages, content=args.character * args.size)
        with servers.running(servers.OURS, ctx, db_path=db_path) as server:
            users = api.create_users(server.url, 3, prefix="replays")
            asyncio.run(measure(server, room, users, args.sockets, ctx.progress))
    return 0


if __name__ == "__main__":
    sys.exit(main())
