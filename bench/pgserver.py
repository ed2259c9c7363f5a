"""The benchmark's PostgreSQL: the tests' server (tests/postgres_server.py), started durable.

The tests' module is imported from its folder rather than copied: one way to
run Debian's PostgreSQL as the postgres user on a loopback port, and it needs
nothing of pytest. The benchmark asks it for fsync and full-page writes on,
with synchronous_commit at its default (on), as a deployment runs: a message
is on disk before the server acknowledges it.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import postgres_server  # noqa: E402
from postgres_server import PostgresServer  # noqa: E402

__all__ = ["PostgresServer", "available", "start_durable"]


def available() -> bool:
    """Debian's PostgreSQL is installed. With CHAT_REQUIRE_ALL set (as in CI), its absence is an error."""
    if postgres_server.available():
        return True
    if os.environ.get("CHAT_REQUIRE_ALL"):
        raise RuntimeError("PostgreSQL is not installed (Debian's postgresql), and CHAT_REQUIRE_ALL is set")
    return False


def start_durable() -> PostgresServer:
    return PostgresServer(durable=True).start()
