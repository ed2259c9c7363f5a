"""Start and stop the two servers as subprocesses on a fresh port each time."""

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
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from bench.context import Context

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BASELINE = "baseline"
OURS = "ours"

# What the benchmark turns off in the server under test, as API.md allows.
OURS_ENV = {"RATE_LIMIT_PER_SECOND": "0", "MAX_CONNECTIONS_PER_USER": "0", "LOG_LEVEL": "WARNING"}


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


def command(kind: str, port: int, db_path: Path | None, snapshots: Path | None = None) -> list[str]:
    """The server's command line; with `snapshots`, under tracemalloc (see traced_server.py)."""
    python = [sys.executable] if snapshots is None else [sys.executable, "-m", "bench.traced_server", str(snapshots)]
    if kind == BASELINE:
        return [*python, "-m", "bench.baseline_server", "--host", HOST, "--port", str(port)]
    return [*python, "run.py", "--host", HOST, "--port", str(port), "--db", str(db_path)]


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
            snapshots: Path | None = None) -> Iterator[Server]:
    """A server of that kind, stopped (SIGINT, then SIGKILL) on leaving."""
    workdir, port = ctx.workdir, free_port()
    if kind == OURS and db_path is None:
        db_path = workdir / f"chat-{port}.db"
    log_path = workdir / f"{kind}-{port}.log"
    env = {**os.environ, **(OURS_ENV if kind == OURS else {})}
    with open(log_path, "wb") as log:
        began = time.monotonic()
        # The server under test runs from ctx.server_root (a checkout of the commit to measure).
        proc = subprocess.Popen(command(kind, port, db_path, snapshots), cwd=ctx.server_root if kind == OURS else REPO_ROOT,
                                env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        try:
            wait_healthy(port, proc, timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{kind} server: {exc}\n{log_tail(log_path)}") from None
        yield Server(kind, proc.pid, port, time.monotonic() - began)
    finally:
        stop(proc)


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
