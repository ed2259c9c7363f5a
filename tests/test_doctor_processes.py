"""tools/doctor.py on a PostgreSQL deployment: the store, and two processes that must share rooms.

Real `run.py` processes on a real PostgreSQL (the session's `postgres`), the
doctor run as a person runs it; the tests read its lines and its --json.
"""

from __future__ import annotations

import re

from postgres_server import PostgresServer
from test_tools import DOCTOR, StartServer, run_tool


def checks_by_name(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


async def test_doctor_names_the_store_and_the_process_that_answered(start_server: StartServer,
                                                                    postgres: PostgresServer) -> None:
    on_sqlite = start_server()
    on_postgres = start_server(DATABASE_URL=postgres.new_database())

    sqlite_run = await run_tool(DOCTOR, on_sqlite.url)
    postgres_run = await run_tool(DOCTOR, on_postgres.url)

    assert sqlite_run.line("PASS store:") == (
        f"PASS store: sqlite, database healthy, answered by process {on_sqlite.get_json('/health')['process']}")
    assert postgres_run.status == 0, postgres_run.out
    assert postgres_run.line("PASS store:") == (
        f"PASS store: postgresql, database healthy, answered by process {on_postgres.get_json('/health')['process']}")


async def test_doctor_says_when_postgresql_stops_answering(start_server: StartServer,
                                                           postgres: PostgresServer) -> None:
    database = postgres.new_database()
    server = start_server(DATABASE_URL=database)
    name = database.rsplit("/", 1)[1]
    # The database refuses new connections and loses the ones it had: to this process, gone away.
    postgres.sql(postgres.url(), f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
    postgres.sql(postgres.url(), f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")

    run = await run_tool(DOCTOR, server.url)

    assert run.status == 1
    assert run.line("FAIL store:").startswith("FAIL store: postgresql, database unhealthy, answered by process ")
    assert run.lines[run.lines.index(run.line("FAIL store:")) + 1].startswith(
        "     - PostgreSQL does not answer this process: check that it is running")


async def test_doctor_sees_two_processes_on_one_database_deliver_to_each_other(
    start_server: StartServer, postgres: PostgresServer,
) -> None:
    database = postgres.new_database()
    first, second = start_server(DATABASE_URL=database), start_server(DATABASE_URL=database)
    processes = [server.get_json("/health")["process"] for server in (first, second)]

    run = await run_tool(DOCTOR, first.url, second.url, "--json")

    assert run.status == 0, run.out
    between = checks_by_name(run.json())["between processes"]
    assert between["status"] == "pass", between
    assert between["summary"].startswith(f"{processes[0]} (postgresql) and {processes[1]} (postgresql): "
                                         f"5 messages sent on {second.url} reached {first.url} in ")
    assert len(between["data"]["seconds"]) == 5
    # The probes are ordinary messages of the room the doctor made, stored once each.
    history = first.get_json(f"/rooms/{between['data']['room']}/messages")
    assert [m["content"][-2:] for m in history] == ["#1", "#2", "#3", "#4", "#5"]


async def test_doctor_says_when_two_processes_do_not_share_a_database(
    start_server: StartServer, postgres: PostgresServer,
) -> None:
    first = start_server(DATABASE_URL=postgres.new_database())
    second = start_server(DATABASE_URL=postgres.new_database())

    run = await run_tool(DOCTOR, first.url, second.url)

    assert run.status == 1
    failed = run.line("FAIL between processes:")
    assert re.search(rf"the room created through {re.escape(first.url)} does not exist on {re.escape(second.url)} "
                     r"\(refused over HTTP with 404 Room not found \(close code 4004\)\)$", failed), failed
    assert run.lines[run.lines.index(failed) + 1] == (
        "     - the processes do not share a database: check DATABASE_URL on each (the same host, port and "
        "database); processes share rooms only through one PostgreSQL, never through SQLite files")


async def test_doctor_says_when_notifications_between_processes_are_not_arriving(
    start_server: StartServer, postgres: PostgresServer,
) -> None:
    # As behind a PgBouncer in transaction mode: no LISTEN, so only the one-second poll delivers.
    database = postgres.new_database()
    first, second = (start_server(DATABASE_URL=database, DATABASE_NOTIFICATIONS="false") for _ in range(2))

    run = await run_tool(DOCTOR, first.url, second.url)

    assert run.status == 0, run.out  # delivery works, late: a warning
    warned = run.line("WARN between processes:")
    assert re.search(r": delivery between processes took \d\.\d s: 5 messages sent on ", warned), warned
    advice = run.lines[run.lines.index(warned) + 1]
    assert advice.startswith("     - notifications are not arriving") and "DATABASE_NOTIFICATIONS" in advice


async def test_doctor_warns_when_both_addresses_reach_one_process(start_server: StartServer) -> None:
    server = start_server()

    run = await run_tool(DOCTOR, server.url, server.url.replace("127.0.0.1", "localhost"))

    assert run.status == 0, run.out
    assert run.line("WARN between processes:").endswith("nothing to compare")
