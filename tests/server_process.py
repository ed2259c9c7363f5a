"""`run.py` as a child process on 127.0.0.1: for tests of start-up, signals, crashes and real clients."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, name: str, seconds: float = 10) -> None:
    """Wait until a program just started (nginx, PgBouncer) accepts connections on the loopback port."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} not listening on {port} within {seconds} s")


class ServerProcess:
    """A server on a free port with its own database and log; stop() sends SIGTERM as an operator would."""

    def __init__(self, db_path: Path, log_path: Path, env: dict[str, str] | None = None,
                 port: int | None = None, open_files: int | None = None) -> None:
        self.db_path = db_path
        self.log_path = log_path
        self.env = env or {}
        self.open_files = open_files  # the child's RLIMIT_NOFILE, when it must be lower than ours
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(self.port), "--db", str(self.db_path)],
                cwd=REPO_ROOT, env={**os.environ, "ENVIRONMENT": "development", **self.env},
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._limit_open_files,
            )
        self.wait_until_healthy()
        return self

    def _limit_open_files(self) -> None:
        if self.open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not answer /health within {START_TIMEOUT}s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then wait; the exit status, or None if it was not running. Kills it if it hangs."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
            raise RuntimeError(f"server ignored SIGTERM for {STOP_TIMEOUT}s:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop and start again on the same port and database."""
        self.stop()
        self.start()

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.load(response)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"
