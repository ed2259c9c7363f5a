"""Start and stop the servers as subprocesses on a fresh port each time, alone or as a cluster on PostgreSQL."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    from bench.context import Context

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BASELINE = "baseline"        # in memory, each frame encoded once (what a careful aiohttp user writes)
NAIVE = "naive"              # in memory, each frame encoded again per socket (issue 6's baseline)
OURS = "ours"                # run.py on SQLite, one process
OURS_BEFORE = "ours-before"  # the same, from --before-tree (the commit before PostgreSQL)
OURS_PG = "ours-pg"          # run.py on PostgreSQL, one process
OURS_PG3 = "ours-pg×3"       # three run.py processes on one PostgreSQL database, clients spread over them
OURS_PG3_ROOMS = "ours-pg×3-rooms"  # the same three, each room's clients on one of them (nginx hashing on the room)
KINDS = (BASELINE, NAIVE, OURS_BEFORE, OURS, OURS_PG, OURS_PG3, OURS_PG3_ROOMS)
OURS_KINDS = (OURS_BEFORE, OURS, OURS_PG, OURS_PG3, OURS_PG3_ROOMS)  # the chat server: every run must lose nothing
PROCESSES = {OURS_PG3: 3, OURS_PG3_ROOMS: 3}
POSTGRES_KINDS = (OURS_PG, OURS_PG3, OURS_PG3_ROOMS)
ROOMS_ON_ONE_PROCESS = (OURS_PG3_ROOMS,)

# What the benchmark turns off in the server under test, as API.md allows.
OURS_ENV = {"RATE_LIMIT_PER_SECOND": "0", "CREATE_RATE_PER_MINUTE": "0", "MAX_CONNECTIONS_PER_USER": "0",
            "LOG_LEVEL": "WARNING"}


@dataclass
class Server:
    kind: str
    pid: int
    port: int
    started_in: float  # seconds from process start until /health answered

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    """The server processes of one run (one, or three on PostgreSQL), and PostgreSQL's postmaster if any."""
    kind: str
    servers: list[Server]
    postgres_pid: int | None = None

    @property
    def pids(self) -> list[int]:
        return [server.pid for server in self.servers]


def command(kind: str, port: int, store: Sequence[str], snapshots: Path | None = None) -> list[str]:
    """The server's command line; with `snapshots`, under tracemalloc (see traced_server.py)."""
    python = [sys.executable] if snapshots is None else [sys.executable, "-m", "bench.traced_server", str(snapshots)]
    if kind in (BASELINE, NAIVE):
        naive = ["--naive"] if kind == NAIVE else []
        return [*python, "-m", "bench.baseline_server", "--host", HOST, "--port", str(port), *naive]
    return [*python, "run.py", "--host", HOST, "--port", str(port), *store]


def server_root(kind: str, ctx: "Context") -> Path:
    if kind == OURS_BEFORE:
        return ctx.before_root
    return ctx.server_root if kind in OURS_KINDS else REPO_ROOT


# Never a proxy from the environment: all traffic stays on this machine.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(url: str, timeout: float = 10.0):
    with _NO_PROXY.open(url, timeout=timeout) as resp:
        return json.load(resp)


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering /health")
        try:
            with _NO_PROXY.open(f"http://{HOST}:{port}/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"server did not answer /health within {timeout} s")


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def running(kind: str, ctx: "Context", db_path: Path | None = None, timeout: float = 30.0,
            snapshots: Path | None = None, database_url: str | None = None) -> Iterator[Server]:
    """A server of that kind, stopped (SIGINT, then SIGKILL) on leaving."""
    workdir, port = ctx.workdir, free_port()
    if database_url:
        store = ["--database-url", database_url]
    else:
        store = ["--db", str(db_path or workdir / f"chat-{port}.db")]
    log_path = workdir / f"{kind}-{port}.log"
    env = {**os.environ, **(OURS_ENV if kind in OURS_KINDS else {})}
    with open(log_path, "wb") as log:
        began = time.monotonic()
        # The server under test runs from ctx.server_root (a checkout of the commit to measure).
        proc = subprocess.Popen(command(kind, port, store, snapshots), cwd=server_root(kind, ctx), env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        try:
            wait_healthy(port, proc, timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{kind} server: {exc}\n{log_tail(log_path)}") from None
        yield Server(kind, proc.pid, port, time.monotonic() - began)
    finally:
        stop(proc)


@contextlib.contextmanager
def running_cluster(kind: str, ctx: "Context") -> Iterator[Cluster]:
    """The processes of that kind; on PostgreSQL, a new database that all of them share."""
    with contextlib.ExitStack() as stack:
        database_url, postgres_pid = None, None
        if kind in POSTGRES_KINDS:
            database_url, postgres_pid = ctx.postgres.new_database(), ctx.postgres.pid()
        # One after the other: the first applies the migrations, the others find them done.
        members = [stack.enter_context(running(kind, ctx, database_url=database_url))
                   for _ in range(PROCESSES.get(kind, 1))]
        yield Cluster(kind, members, postgres_pid)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_hard(server: Server) -> None:
    """SIGKILL, as a crash would: nothing flushed on the way out."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGKILL)
