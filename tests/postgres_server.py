"""A real PostgreSQL server for tests: Debian's binaries, a temporary data folder, a loopback port."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from server_process import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "chat"


def available() -> bool:
    return (PG_BIN / "pg_ctl").exists()


class PostgresServer:
    """initdb, start, stop and restart one server; each test asks it for a database of its own.

    PostgreSQL refuses to run as root, so as root its programs run as the `postgres` user,
    in a folder of their own outside pytest's (whose parents are closed to other users).
    """

    def __init__(self, durable: bool = False) -> None:
        self.durable = durable  # fsync as a deployment would (the benchmark); tests skip it
        self.folder = Path(tempfile.mkdtemp(prefix="chat-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        self._names = itertools.count(1)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "--no-sync")

    def _run(self, program: str, *args: str) -> None:
        command = [str(PG_BIN / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> PostgresServer:
        # No fsync for tests: their databases live for one test run. A commit still reaches the OS before
        # it is acknowledged (synchronous_commit stays on), so a restart, as a crash, keeps every commit.
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=300"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.log), "-o", options, "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    def restart(self) -> None:
        """Stop at once, as a crash or a failover would, and start again on the same port."""
        self.stop("immediate")
        self.start()

    def pid(self) -> int:
        """The postmaster's process id; every backend is its child."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the server and its backends (SIGSTOP) and go on afterwards: a database that stops answering
        without closing its connections, as across a network partition or from a VM paused."""
        processes = [self.pid(), *_children(self.pid())]
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in processes:
                os.kill(pid, signal.SIGCONT)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        name = f"test_{next(self._names)}"
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", self.url(), "-c", f"CREATE DATABASE {name}"],
                       check=True, capture_output=True, timeout=60)
        return self.url(name)

    def sql(self, url: str, statement: str) -> str:
        """Run one statement with psql and return its unaligned output."""
        done = subprocess.run(["psql", "-qAt", "-v", "ON_ERROR_STOP=1", url, "-c", statement],
                              check=True, capture_output=True, text=True, timeout=60)
        return done.stdout.strip()

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.folder, ignore_errors=True)


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            # /proc/PID/stat: "PID (NAME) STATE PPID ...", and NAME may hold spaces and parentheses.
            if entry.name.isdigit() and int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == parent:
                found.append(int(entry.name))
        except OSError:
            pass  # it ended meanwhile
    return found
