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
from urllib.parse import urlsplit

from bench.procstat import process_tree
from server_process import free_port, wait_for_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PGBOUNCER = Path("/usr/sbin/pgbouncer")
USER = "chat"


def available() -> bool:
    return (PG_BIN / "pg_ctl").exists()


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL (and PgBouncer) refuse to run as root: as root, they run as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


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
        subprocess.run(as_postgres([str(PG_BIN / program), *args]), check=True, capture_output=True, timeout=60)

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
        processes = process_tree(self.pid())
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


class PgBouncer:
    """PgBouncer in transaction mode in front of a PostgresServer, as a deployment may put it.

    Its few server connections are shared by every client connection, a transaction at a
    time, so what a session leaves on a connection (LISTEN, a prepared statement, a
    session's advisory lock) is not there for that session's next transaction.
    """

    def __init__(self, postgres: PostgresServer) -> None:
        self.port = free_port()
        config = postgres.folder / "pgbouncer.ini"
        config.write_text(f"""[databases]
* = host=127.0.0.1 port={postgres.port} user={USER}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 3
logfile = {postgres.folder / "pgbouncer.log"}
""")
        self._process = subprocess.Popen(as_postgres([str(PGBOUNCER), str(config)]),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, self._process, f"PgBouncer (see {postgres.folder / 'pgbouncer.log'})")
        except RuntimeError:
            self.stop()
            raise

    def url(self, direct: str) -> str:
        """The URL of a database through PgBouncer, given its direct URL."""
        parts = urlsplit(direct)
        return parts._replace(netloc=f"{parts.username}@127.0.0.1:{self.port}").geturl()

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)
