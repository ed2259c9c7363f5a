"""tools/ws_network_smoke.py and tools/doctor.py against a live server.

The server runs as a subprocess, as `python run.py` would run it, and the
tools run as a person runs them; the tests read their output lines, their
exit status and the doctor's --json.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from server_process import ServerProcess, free_port

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "tools" / "ws_network_smoke.py"
DOCTOR = REPO / "tools" / "doctor.py"
# What the doctor says of each form of a refusal, and why it came in that form.
AS_A_BROWSER = ("the doctor sent Origin {origin}, as a page from there does: the server lets a browser's "
                "socket open and then closes it, so that the page can read the code and reason")
AS_A_SCRIPT = ("the doctor sent no Origin, as a script does: the server then refuses over HTTP instead of "
               "upgrading, with the close code in the JSON body; a browser (with an Origin) gets the same "
               "code as a close")

SMOKE_STEPS = (
    "create user", "create room", "join room", "connect socket",
    "receive join message", "send message", "receive broadcast", "read history",
)


StartServer = Callable[..., ServerProcess]  # the start_server fixture of conftest.py


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    return start_server()


@dataclass
class ToolRun:
    status: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def line(self, prefix: str) -> str:
        found = [line for line in self.lines if line.startswith(prefix)]
        assert len(found) == 1, f"one line starting {prefix!r} expected in:\n{self.out}"
        return found[0]

    def json(self) -> dict:
        return json.loads(self.out)


async def run_tool(script: Path, *args: str, env: dict[str, str] | None = None) -> ToolRun:
    """Run a tool the way a person does, from the repository root."""
    base_env = {k: v for k, v in os.environ.items() if k not in ("API_BASE", "WS_BASE")}
    base_env.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script.relative_to(REPO)), *args, cwd=REPO, env=base_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return ToolRun(process.returncode, out.decode(), err.decode())


def statuses(report: dict) -> list[tuple[str, str]]:
    return [(check["name"], check["status"]) for check in report["checks"]]


async def create_user(url: str, username: str = "alice") -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/users", json={"username": username}) as resp:
            assert resp.status == 200
            return await resp.json()


# A proxy that forwards every request as plain HTTP and drops the hop-by-hop
# headers, as nginx does without the upgrade lines: the server gets the
# WebSocket handshake as an ordinary GET.
HOP_BY_HOP = {"connection", "upgrade", "keep-alive", "transfer-encoding", "host",
              "content-length", "content-encoding", "te", "trailer", "proxy-connection"}


def plain_proxy(upstream: str) -> web.Application:
    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with aiohttp.ClientSession(auto_decompress=True) as session:
            async with session.request(request.method, upstream + request.path_qs,
                                       headers=headers, data=await request.read()) as resp:
                body = await resp.read()
                kept = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=resp.status, body=body, headers=kept)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


@pytest.fixture
async def proxy_without_upgrade(server: ServerProcess) -> AsyncIterator[str]:
    runner = web.AppRunner(plain_proxy(server.url))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


# -- the smoke tool -------------------------------------------------------------


async def test_smoke_passes_every_step_against_a_live_server(server: ServerProcess) -> None:
    run = await run_tool(SMOKE, "--url", server.url)

    assert run.status == 0, run.out + run.err
    assert run.lines[0] == f"smoke test of {server.url} (socket {server.url.replace('http', 'ws', 1)})"
    steps = run.lines[1:-1]
    assert [line.split(":")[0] for line in steps] == [f"PASS {step}" for step in SMOKE_STEPS]
    username = run.line("PASS create user:").split("username=")[1]
    assert run.line("PASS receive join message:") == f"PASS receive join message: {username} joined the chat"
    assert run.lines[-1] == "smoke test passed (8/8 steps)"


async def test_smoke_reads_api_base_from_the_environment_as_before(server: ServerProcess) -> None:
    run = await run_tool(SMOKE, env={"API_BASE": server.url})

    assert run.status == 0, run.out
    assert run.lines[0] == f"smoke test of {server.url} (socket ws://{server.url[len('http://'):]})"


# The two forms of a refusal (API.md): a script's handshake (no Origin) is answered over HTTP,
# a browser's (with an Origin; the server's own is always allowed) is upgraded, then closed.
REFUSAL_FORMS = pytest.mark.parametrize("as_browser, seen", [
    (False, "refused over HTTP with {status} {reason} (close code {code})"),
    (True, "closed with {code} {reason}"),
], ids=["script", "browser"])


def origin_args(server: ServerProcess, as_browser: bool) -> tuple[str, ...]:
    return ("--origin", server.url) if as_browser else ()


@REFUSAL_FORMS
async def test_smoke_diagnoses_an_unknown_room(server: ServerProcess, as_browser: bool, seen: str) -> None:
    run = await run_tool(SMOKE, "--url", server.url, "--room", "no-such-room", *origin_args(server, as_browser))

    assert run.status == 1
    assert run.line("FAIL use room:") == (
        "FAIL use room: room no-such-room: answered 404 Room not found — the room does not "
        "exist: create it first (POST /rooms) or set ALLOW_JOIN_AUTO_ROOMS=true")
    refusal = seen.format(status=404, code=4004, reason="Room not found")
    assert run.line("FAIL connect socket:") == (
        f"FAIL connect socket: {refusal} — the room does not exist on "
        "this server: create it first (POST /rooms, then use the id it returns), or set "
        "ALLOW_WEBSOCKET_AUTO_ROOMS=true")
    assert run.line("SKIP receive join message:") == "SKIP receive join message: the socket is not open"
    assert run.lines[-1] == "smoke test FAILED (1/8 steps passed; first problem: use room)"


async def test_smoke_diagnoses_a_proxy_that_drops_the_upgrade(proxy_without_upgrade: str) -> None:
    run = await run_tool(SMOKE, "--url", proxy_without_upgrade)

    assert run.status == 1
    # The plain HTTP steps get through such a proxy; the socket does not.
    assert [line[:4] for line in run.lines[1:4]] == ["PASS"] * 3
    assert run.line("FAIL connect socket:") == (
        "FAIL connect socket: the handshake was answered with plain HTTP 400 instead of 101 "
        "Switching Protocols: the WebSocket upgrade did not get through — the proxy in front "
        "of the server must forward the Upgrade and Connection headers (nginx: "
        "proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header "
        "Connection \"upgrade\"; see deploy/nginx.conf)")


async def test_smoke_diagnoses_a_refused_origin(start_server: StartServer) -> None:
    server = start_server(CORS_ORIGINS="https://app.example.com")

    refused = await run_tool(SMOKE, "--url", server.url, "--origin", "https://evil.example.com")
    allowed = await run_tool(SMOKE, "--url", server.url, "--origin", "https://app.example.com")

    assert refused.status == 1
    assert refused.line("FAIL connect socket:") == (
        "FAIL connect socket: closed with 4003 Origin not allowed — the page's Origin is not "
        "allowed: add it to CORS_ORIGINS (comma-separated exact origins, e.g. "
        "https://app.example.com) or match it with CORS_ORIGIN_REGEX, then restart the server")
    assert allowed.status == 0, allowed.out
    assert allowed.line("PASS connect socket:").endswith(" with Origin https://app.example.com")


async def test_smoke_passes_a_server_that_requires_tokens(start_server: StartServer) -> None:
    server = start_server(REQUIRE_TOKENS="true")

    run = await run_tool(SMOKE, "--url", server.url)

    assert run.status == 0, run.out + run.err  # the history, too, is read with the user's token
    assert run.line("PASS read history:").startswith("PASS read history: the message is stored")


@REFUSAL_FORMS
async def test_smoke_diagnoses_a_missing_token(start_server: StartServer, as_browser: bool, seen: str) -> None:
    server = start_server(REQUIRE_TOKENS="true")

    run = await run_tool(SMOKE, "--url", server.url, "--no-token", *origin_args(server, as_browser))

    assert run.status == 1
    refusal = seen.format(status=401, code=4001, reason="Unauthorized")
    assert run.line("FAIL connect socket:").startswith(
        f"FAIL connect socket: {refusal} — the server requires tokens")


async def test_smoke_as_an_existing_user_reports_one_connection_too_many_as_json(start_server: StartServer) -> None:
    server = start_server(MAX_CONNECTIONS_PER_USER="1")
    user = await create_user(server.url)
    async with aiohttp.ClientSession() as session:
        room = await (await session.post(f"{server.url}/rooms", json={"name": "lobby"})).json()
        async with session.ws_connect(f"{server.ws_url}/ws/{room['id']}/{user['id']}") as held:
            assert (await held.receive_json(timeout=10))["type"] == "user_joined"
            run = await run_tool(SMOKE, "--url", server.url, "--user", user["id"], f"--token={user['token']}",
                                 "--room", room["id"], "--json")

    assert run.status == 1
    report = run.json()
    assert report["ok"] is False
    steps = {step["step"]: step for step in report["steps"]}
    assert steps["use user"] == {"step": "use user", "verdict": "PASS",
                                 "detail": f"id={user['id']} username=alice (given with --user)"}
    assert steps["connect socket"]["detail"] == (
        "refused over HTTP with 429 Too many connections (close code 1008) — this user (or this address) "
        "already holds as many sockets as the server allows (MAX_CONNECTIONS_PER_USER, "
        "MAX_CONNECTIONS_PER_ADDRESS): close the others, or raise the limit")
    assert report["summary"] == "smoke test FAILED (3/8 steps passed; first problem: connect socket)"


async def test_smoke_says_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    run = await run_tool(SMOKE, "--url", url)

    assert run.status == 1
    assert run.lines[1] == (
        f"FAIL create user: cannot connect to {url[len('http://'):]} (Connection refused): "
        "is the server running there?")
    assert run.lines[-1] == "smoke test FAILED (0/8 steps passed; first problem: create user)"


async def test_smoke_refuses_a_url_that_is_not_one() -> None:
    run = await run_tool(SMOKE, "--url", "localhost:8000")

    assert run.status == 2
    assert run.err.strip() == "error: 'localhost:8000' is not an http(s):// or ws(s):// URL with a host"


# -- the doctor -------------------------------------------------------------------


async def test_doctor_finds_no_problem_with_a_healthy_server(server: ServerProcess) -> None:
    text = await run_tool(DOCTOR, server.url)
    report = (await run_tool(DOCTOR, server.url, "--json")).json()

    assert text.status == 0, text.out
    assert text.lines[0] == f"chat doctor for {server.url} (socket ws://{server.url[7:]})"
    assert text.line("PASS healthy:").startswith("PASS healthy: version ")
    assert text.line("     - a socket for an unknown room").startswith(
        "     - a socket for an unknown room is refused with 4004 Room not found")
    assert text.lines[-1] == "no problems found"
    assert report["ok"] is True and report["problems"] == 0
    assert statuses(report) == [
        ("reachable", "pass"), ("healthy", "pass"), ("store", "pass"), ("flags", "info"), ("websocket", "pass")]
    flags = report["checks"][3]["data"]
    assert flags["environment"] == "development" and flags["auto_create_on_ws"] is False
    # Its probe, as a script, was refused over HTTP by the chat server itself: the upgrade got there.
    websocket = next(check for check in report["checks"] if check["name"] == "websocket")
    assert websocket["summary"].endswith(
        "refused over HTTP with 404 Room not found (close code 4004), as expected for the made-up id "
        "the doctor used; give --room and --user to try a real pair")
    assert websocket["advice"] == [AS_A_SCRIPT]
    assert websocket["data"] == {"form": "http", "status": 404, "close_code": 4004, "reason": "Room not found"}


async def test_doctor_takes_the_address_as_url_too_like_the_smoke_tool(server: ServerProcess) -> None:
    positional = (await run_tool(DOCTOR, server.url, "--json")).json()
    flag = (await run_tool(DOCTOR, "--url", server.url, "--json")).json()
    three = await run_tool(DOCTOR, "--url", server.url, "http://127.0.0.1:1", "http://127.0.0.1:2")

    assert statuses(flag) == statuses(positional) and flag["url"] == server.url
    assert three.status == 2
    assert three.err.strip().endswith("error: at most two addresses: a process (URL or --url), and another "
                                      "process of the same deployment")


@pytest.mark.parametrize("tool", [SMOKE, DOCTOR], ids=["smoke", "doctor"])
async def test_both_tools_take_the_same_flags(tool: Path) -> None:
    run = await run_tool(tool, "--help")

    for flag in ("--url", "--origin", "--room", "--user", "--token", "--timeout", "--json", "--insecure"):
        assert f"  {flag}" in run.out, flag


async def test_doctor_connects_a_real_room_and_user(server: ServerProcess) -> None:
    user = await create_user(server.url)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/rooms", json={"name": "lobby"}) as resp:
            room = await resp.json()

    report = (await run_tool(DOCTOR, server.url, "--room", room["id"], "--user", user["id"], "--json")).json()

    assert report["ok"] is True
    assert statuses(report)[4:] == [("room", "pass"), ("user", "pass"), ("websocket", "pass")]
    assert report["checks"][6]["summary"].endswith("upgraded (101) and received 'user_joined'")


@REFUSAL_FORMS
async def test_doctor_explains_an_unknown_room(server: ServerProcess, as_browser: bool, seen: str) -> None:
    user = await create_user(server.url)
    args = (server.url, "--room", "no-such-room", "--user", user["id"], *origin_args(server, as_browser))
    refusal = ("upgraded (101), then " if as_browser else "") + seen.format(
        status=404, code=4004, reason="Room not found")

    text = await run_tool(DOCTOR, *args)
    report = (await run_tool(DOCTOR, *args, "--json")).json()

    assert text.status == 1
    assert text.line("FAIL room:") == (
        "FAIL room: room no-such-room does not exist: a socket for it is refused with 4004 Room not found")
    assert text.line("FAIL websocket:") == (
        f"FAIL websocket: ws://{server.url[7:]}/ws/no-such-room/{user['id']}: {refusal}")
    assert report["problems"] == 2
    websocket = report["checks"][-1]
    assert websocket["advice"] == [
        "the room does not exist on this server: create it first (POST /rooms, then use the "
        "id it returns), or set ALLOW_WEBSOCKET_AUTO_ROOMS=true",
        AS_A_BROWSER.format(origin=server.url) if as_browser else AS_A_SCRIPT]


async def test_doctor_shows_the_proxy_lines_when_the_upgrade_is_dropped(
    proxy_without_upgrade: str,
) -> None:
    text = await run_tool(DOCTOR, proxy_without_upgrade)
    report = (await run_tool(DOCTOR, proxy_without_upgrade, "--json")).json()

    assert text.status == 1
    assert text.line("FAIL websocket:").endswith(
        "the handshake was answered with plain HTTP 400 instead of 101 Switching Protocols: "
        "the WebSocket upgrade did not get through")
    assert "         proxy_set_header Upgrade $http_upgrade;" in text.lines
    assert "         proxy_set_header Connection $connection_upgrade;" in text.lines
    assert statuses(report) == [
        ("reachable", "pass"), ("healthy", "pass"), ("store", "pass"), ("flags", "info"), ("websocket", "fail")]
    websocket = report["checks"][-1]
    assert websocket["advice"][0] == (
        "a proxy between you and the server does not forward the Upgrade and Connection "
        "headers, so the server saw an ordinary GET")
    assert "proxy_http_version 1.1;" in websocket["fix"].splitlines()


async def test_doctor_explains_a_refused_origin(start_server: StartServer) -> None:
    server = start_server(CORS_ORIGINS="https://app.example.com")

    refused = await run_tool(DOCTOR, server.url, "--origin", "https://evil.example.com", "--json")
    allowed = await run_tool(DOCTOR, server.url, "--origin", "https://app.example.com", "--json")

    assert refused.status == 1
    checks = {check["name"]: check for check in refused.json()["checks"]}
    assert checks["cors"]["status"] == "fail"
    assert checks["cors"]["summary"] == (
        "origin https://evil.example.com is refused: the preflight answered 403 Origin not "
        "allowed with no Access-Control-Allow-Origin; a page at https://evil.example.com "
        "cannot call the API, and its sockets are closed with 4003")
    assert checks["websocket"]["status"] == "fail"
    assert checks["websocket"]["summary"].endswith("upgraded (101), then closed with 4003 Origin not allowed")
    assert checks["websocket"]["advice"][0].startswith("the page's Origin is not allowed: add it to CORS_ORIGINS")
    assert checks["websocket"]["advice"][-1] == AS_A_BROWSER.format(origin="https://evil.example.com")
    assert allowed.status == 0, allowed.out
    assert statuses(allowed.json())[4:] == [("cors", "pass"), ("websocket", "pass")]


@REFUSAL_FORMS
async def test_doctor_translates_4001_for_a_socket_without_its_token(
        start_server: StartServer, as_browser: bool, seen: str) -> None:
    server = start_server(REQUIRE_TOKENS="true", ALLOW_WEBSOCKET_AUTO_ROOMS="true")
    user = await create_user(server.url)
    args = ("--url", server.url, "--room", "lobby", "--user", user["id"], *origin_args(server, as_browser))

    report = (await run_tool(DOCTOR, *args, "--json")).json()
    with_token = (await run_tool(DOCTOR, *args, f"--token={user['token']}", "--json")).json()

    websocket = report["checks"][-1]
    assert websocket["status"] == "fail"
    assert websocket["summary"].endswith(seen.format(status=401, code=4001, reason="Unauthorized"))
    assert websocket["advice"][0].startswith("the server requires tokens (REQUIRE_TOKENS=true)")
    assert websocket["data"]["form"] == ("close" if as_browser else "http")
    assert with_token["ok"] is True
    assert statuses(with_token)[-1] == ("websocket", "pass")


async def test_doctor_production_checklist_passes_a_production_setup(start_server: StartServer) -> None:
    server = start_server(ENVIRONMENT="production", CORS_ORIGINS="https://app.example.com",
                          REQUIRE_TOKENS="true", ALLOWED_HOSTS="127.0.0.1")

    run = await run_tool(DOCTOR, server.url, "--production", "--origin", "https://app.example.com", "--json")

    assert run.status == 0, run.out
    assert statuses(run.json())[-6:] == [
        ("production: environment", "pass"),
        ("production: auto-creation", "pass"),
        ("production: tokens", "pass"),
        ("production: CORS origins", "pass"),
        ("production: allowed hosts", "pass"),
        # Loopback without TLS is how the server sits behind nginx: a reminder, not a failure.
        ("production: https/wss", "warn"),
    ]


async def test_doctor_production_checklist_fails_a_development_setup(server: ServerProcess) -> None:
    run = await run_tool(DOCTOR, server.url, "--production")

    assert run.status == 1
    assert run.line("FAIL production: environment:") == "FAIL production: environment: ENVIRONMENT=development"
    assert run.line("FAIL production: CORS origins:") == (
        "FAIL production: CORS origins: any origin is allowed (even https://doctor-probe.invalid)")
    assert run.line("FAIL production: tokens:").startswith("FAIL production: tokens: REQUIRE_TOKENS=false")
    assert run.line("WARN production: allowed hosts:").startswith(
        "WARN production: allowed hosts: a request for any host name is served (even doctor-probe.invalid, "
        "answered 200): a page on a name an attacker points at this server (DNS rebinding)")
    assert run.lines[-1] == "3 problems found (see FAIL above)"


async def test_doctor_production_checklist_fails_a_server_without_tokens(start_server: StartServer) -> None:
    server = start_server(ENVIRONMENT="production", CORS_ORIGINS="https://app.example.com",
                          REQUIRE_TOKENS="false")

    run = await run_tool(DOCTOR, server.url, "--production", "--origin", "https://app.example.com")

    assert run.status == 1
    assert run.line("FAIL production: tokens:") == (
        "FAIL production: tokens: REQUIRE_TOKENS=false: user ids are public (GET /users), "
        "and anyone who knows one can speak as that user")
    assert run.lines[-1] == "1 problem found (see FAIL above)"


async def test_doctor_names_a_host_name_the_server_does_not_answer_for(start_server: StartServer) -> None:
    server = start_server(ALLOWED_HOSTS="chat.example.com,127.0.0.1")

    run = await run_tool(DOCTOR, server.url.replace("127.0.0.1", "localhost"))  # the same server, another name

    assert run.status == 1
    assert run.line("FAIL healthy:").endswith("the server does not answer for the name localhost")
    assert run.line("     - add localhost to ALLOWED_HOSTS").startswith("     - add localhost to ALLOWED_HOSTS (comma")


async def test_doctor_json_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    run = await run_tool(DOCTOR, url, "--json")

    assert run.status == 1
    report = run.json()
    assert (report["ok"], report["problems"], statuses(report)) == (False, 1, [("reachable", "fail")])
    assert report["checks"][0]["summary"] == (
        f"cannot connect to {url[7:]} (Connection refused): is the server running there?")
