"""Fixtures: a real app on a real SQLite file under tmp_path, reached through real sockets."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server import create_app
from server.config import Config
import postgres_server
from postgres_server import PgBouncer, PostgresServer
from server_process import ServerProcess

MakeClient = Callable[..., Awaitable[TestClient]]


STORES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `both_stores` run once on SQLite and once on PostgreSQL, so the two cannot drift apart."""
    if metafunc.definition.get_closest_marker("both_stores") and "store" in metafunc.fixturenames:
        metafunc.parametrize("store", STORES, indirect=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run (each test gets a database of its own)."""
    if not postgres_server.available():
        pytest.skip("PostgreSQL is not installed (Debian's postgresql package)")
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def pgbouncer(postgres: PostgresServer) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the run's PostgreSQL server."""
    if not postgres_server.PGBOUNCER.exists():
        pytest.skip("PgBouncer is not installed (Debian's pgbouncer package)")
    bouncer = PgBouncer(postgres)
    yield bouncer
    bouncer.stop()


@pytest.fixture
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The store settings of a test: SQLite under tmp_path, or (when parametrized) a new PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return {"database_url": request.getfixturevalue("postgres").new_database()}
    return {"db_path": request.getfixturevalue("tmp_path") / "chat.db"}


@pytest.fixture
def make_client(aiohttp_client: Any, store: dict[str, Any]) -> MakeClient:
    """Start an app with these settings (Config fields) on the test's store (tmp_path/chat.db by default)."""

    async def make(**settings: Any) -> TestClient:
        return await aiohttp_client(create_app(Config(**{**store, **settings})))

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    return await make_client()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """With CHAT_REQUIRE_ALL set (as in CI), a test skipped for want of chromium or nginx fails instead."""
    report = yield
    if report.skipped and os.environ.get("CHAT_REQUIRE_ALL") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but CHAT_REQUIRE_ALL is set: {report.longrepr}"
    return report


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `run.py` in a child process with extra environment variables (and a lower open-file
    limit); all are stopped at the end."""
    servers: list[ServerProcess] = []

    def start(open_files: int | None = None, **env: str) -> ServerProcess:
        n = len(servers)
        server = ServerProcess(tmp_path / f"chat{n}.db", tmp_path / f"server{n}.log", env, open_files=open_files)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()
