"""deploy/nginx.conf, deploy/chat.service and deploy/chat@.service, exercised for real.

nginx runs with the shipped site file, moved onto loopback ports and given a
test certificate, in front of live servers (one, or several on one
PostgreSQL); the smoke tool and the doctor go through it over https/wss. The
units are checked by systemd-analyze.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from postgres_server import PostgresServer
from server_process import ServerProcess, free_port, wait_for_port
from test_tools import DOCTOR, REPO, SMOKE, StartServer, run_tool, statuses

SITE = REPO / "deploy" / "nginx.conf"
UNIT = REPO / "deploy" / "chat.service"
TEMPLATE_UNIT = REPO / "deploy" / "chat@.service"
# The shipped upstream: one line per process of deploy/chat@.service.
SHIPPED_UPSTREAM = re.compile(r"^    server 127\.0\.0\.1:800\d max_fails=1 fail_timeout=5s;\n", re.M)

needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
                                 reason="nginx is not installed (apt-get install nginx)")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="openssl is not installed (apt-get install openssl)")
needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze is not installed")


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


# -- rendering the shipped site onto loopback ---------------------------------------


@dataclass
class SitePorts:
    http: int
    https: int
    upstreams: list[int]


def replace_once(text: str, old: str, new: str) -> str:
    # Exactly once: if the shipped file changes shape, the test says so
    # instead of quietly testing something else.
    assert text.count(old) == 1, f"deploy/nginx.conf should contain {old!r} once"
    return text.replace(old, new)


def render_site(ports: SitePorts, cert: Path, key: Path, access_log: Path, *, drop_upgrade: bool = False,
                drop_host: bool = False) -> str:
    site = SITE.read_text()
    assert site.count("access_log /var/log/nginx/access.log chat_no_query;") == 2  # both sites
    site = site.replace("/var/log/nginx/access.log", str(access_log))
    site, ipv6_listens = re.subn(r"^\s*listen \[::\]:\d+.*\n", "", site, flags=re.M)
    assert ipv6_listens == 2
    site = replace_once(site, "listen 80;", f"listen 127.0.0.1:{ports.http};")
    site = replace_once(site, "listen 443 ssl;", f"listen 127.0.0.1:{ports.https} ssl;")
    shipped = SHIPPED_UPSTREAM.findall(site)
    assert len(shipped) == 3, "deploy/nginx.conf should list three servers in its upstream"
    ours = "".join(f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;\n" for port in ports.upstreams)
    site = replace_once(site, "".join(shipped), ours)
    site = replace_once(site, "/etc/letsencrypt/live/chat.example.com/fullchain.pem", str(cert))
    site = replace_once(site, "/etc/letsencrypt/live/chat.example.com/privkey.pem", str(key))
    if drop_upgrade:
        # The mistake the doctor diagnoses: a /ws/ location without the upgrade headers.
        site, dropped = re.subn(r"^\s*proxy_set_header (Upgrade|Connection \$connection_upgrade).*\n",
                                "", site, flags=re.M)
        assert dropped == 2
    if drop_host:
        # The other classic: nginx then sends "Host: chat_backend".
        site, dropped = re.subn(r"^\s*proxy_set_header Host .*\n", "", site, flags=re.M)
        assert dropped == 2
    return site


def main_config(workdir: Path, site: Path) -> str:
    """What /etc/nginx/nginx.conf gives a site, with every path in workdir."""
    # As root, workers would switch to "nobody", who cannot enter the test's folder.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {workdir}/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {workdir}/access.log;
{temp_paths}
    include {site};
}}
"""


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@dataclass
class Proxy:
    https_url: str
    http_url: str
    cert: Path  # trust it with SSL_CERT_FILE, as a client trusts a real CA
    access_log: Path


StartNginx = Callable[..., Proxy]


@pytest.fixture
def start_nginx(tmp_path: Path) -> Iterator[StartNginx]:
    started: list[subprocess.Popen] = []

    def start(upstream: ServerProcess | list[ServerProcess], **mistakes: bool) -> Proxy:
        workdir = tmp_path / f"nginx-{len(started)}"
        workdir.mkdir()
        cert, key = make_certificate(workdir)
        upstreams = upstream if isinstance(upstream, list) else [upstream]
        ports = SitePorts(http=free_port(), https=free_port(), upstreams=[server.port for server in upstreams])
        site = workdir / "chat-site.conf"
        site.write_text(render_site(ports, cert, key, workdir / "chat-access.log", **mistakes))
        conf = workdir / "nginx.conf"
        conf.write_text(main_config(workdir, site))
        base = [nginx_binary(), "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
        check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen([*base, "-g", "daemon off;"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        wait_for_port(ports.https, process, "nginx")
        return Proxy(f"https://127.0.0.1:{ports.https}", f"http://127.0.0.1:{ports.http}", cert,
                     workdir / "chat-access.log")

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def trusting(proxy: Proxy) -> dict[str, str]:
    return {"SSL_CERT_FILE": str(proxy.cert)}


# -- nginx ------------------------------------------------------------------------------


@needs_nginx
@needs_openssl
async def test_smoke_passes_through_nginx_over_https_and_wss(
    start_server: StartServer, start_nginx: StartNginx,
) -> None:
    # Production defaults: CORS closed to other origins, so the same-host
    # Origin below only passes if nginx hands the server the browser's Host.
    server = start_server(ENVIRONMENT="production", REQUIRE_TOKENS="false")
    proxy = start_nginx(server)
    page_origin = proxy.https_url

    run = await run_tool(SMOKE, "--url", proxy.https_url, "--origin", page_origin, env=trusting(proxy))

    assert run.status == 0, run.out + run.err
    assert run.lines[0] == f"smoke test of {proxy.https_url} (socket wss://{proxy.https_url[8:]})"
    assert run.line("PASS connect socket:").startswith(f"PASS connect socket: wss://{proxy.https_url[8:]}/ws/")
    assert run.lines[-1] == "smoke test passed (8/8 steps)"


@needs_nginx
@needs_openssl
async def test_round_robin_over_three_processes_on_postgresql_serves_every_room_from_each(
    start_server: StartServer, start_nginx: StartNginx, postgres: PostgresServer,
) -> None:
    database = postgres.new_database()
    servers = [start_server(DATABASE_URL=database) for _ in range(3)]
    proxy = start_nginx(servers)
    ssl_context = ssl.create_default_context(cafile=str(proxy.cert))

    async with aiohttp.ClientSession() as session:
        answered = []
        for _ in range(6):
            async with session.get(f"{proxy.https_url}/health", ssl=ssl_context) as resp:
                answered.append((await resp.json())["process"])
    # The smoke tool's eight steps (user, room, join, socket, send, history) land on
    # whichever process round robin picks: each must know what another just stored.
    smoke = await run_tool(SMOKE, "--url", proxy.https_url, env=trusting(proxy))

    assert {server.get_json("/health")["process"] for server in servers} == set(answered)
    assert len(set(answered)) == 3, answered
    assert smoke.status == 0, smoke.out + smoke.err


@needs_nginx
@needs_openssl
async def test_smoke_names_an_untrusted_certificate_and_insecure_gets_past_it(
    start_server: StartServer, start_nginx: StartNginx,
) -> None:
    proxy = start_nginx(start_server())
    untrusted = {"SSL_CERT_FILE": str(proxy.cert.with_name("no-such-bundle.pem"))}

    refused = await run_tool(SMOKE, "--url", proxy.https_url, env=untrusted)
    insecure = await run_tool(SMOKE, "--url", proxy.https_url, "--insecure", env=untrusted)

    assert refused.status == 1
    assert refused.lines[1].startswith(f"FAIL create user: TLS certificate of {proxy.https_url[8:]} was refused (")
    assert insecure.status == 0, insecure.out


@needs_nginx
@needs_openssl
async def test_doctor_says_when_nginx_cannot_reach_the_server(
    start_server: StartServer, start_nginx: StartNginx,
) -> None:
    server = start_server()
    proxy = start_nginx(server)
    server.stop()

    run = await run_tool(DOCTOR, proxy.https_url, env=trusting(proxy))

    assert run.status == 1
    assert run.line("FAIL healthy:").startswith("FAIL healthy: /health answered 502 with a non-JSON body (text/html from nginx/")
    assert run.line("     - a proxy answers").startswith(
        "     - a proxy answers, but it cannot reach the chat server: is the service running")


@needs_nginx
@needs_openssl
async def test_plain_http_is_redirected_to_https(
    start_server: StartServer, start_nginx: StartNginx,
) -> None:
    proxy = start_nginx(start_server())

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.http_url}/chat", allow_redirects=False) as resp:
            assert resp.status == 301
            assert resp.headers["Location"] == "https://127.0.0.1/chat"


@needs_nginx
@needs_openssl
async def test_doctor_production_checklist_passes_through_nginx(
    start_server: StartServer, start_nginx: StartNginx,
) -> None:
    server = start_server(ENVIRONMENT="production", CORS_ORIGINS="https://app.example.com",
                          REQUIRE_TOKENS="true", ALLOWED_HOSTS="127.0.0.1")
    proxy = start_nginx(server)

    run = await run_tool(DOCTOR, proxy.https_url, "--production", "--origin", "https://app.example.com",
                         "--json", env=trusting(proxy))

    assert run.status == 0, run.out
    report = run.json()
    assert report["socket_url"] == f"wss://{proxy.https_url[8:]}"
    assert all(status == "pass" for name, status in statuses(report) if name != "flags"), run.out


@needs_nginx
@needs_openssl
async def test_doctor_names_nginx_when_the_upgrade_lines_are_missing(
    start_server: StartServer, start_nginx: StartNginx,
) -> None:
    proxy = start_nginx(start_server(), drop_upgrade=True)

    run = await run_tool(DOCTOR, proxy.https_url, env=trusting(proxy))
    smoke = await run_tool(SMOKE, "--url", proxy.https_url, env=trusting(proxy))

    assert run.status == 1
    websocket = run.line("FAIL websocket:")
    assert "the handshake was answered with plain HTTP 400 instead of 101 Switching Protocols" in websocket
    assert websocket.endswith("(answered by nginx/" + websocket.rsplit("nginx/", 1)[1])
    assert "         proxy_set_header Upgrade $http_upgrade;" in run.lines
    assert smoke.status == 1
    assert smoke.line("FAIL connect socket:").startswith(
        "FAIL connect socket: the handshake was answered with plain HTTP 400")


@needs_nginx
@needs_openssl
async def test_doctor_explains_a_proxy_that_hides_the_browsers_host(
    start_server: StartServer, start_nginx: StartNginx,
) -> None:
    proxy = start_nginx(start_server(ENVIRONMENT="production", REQUIRE_TOKENS="false"), drop_host=True)

    run = await run_tool(DOCTOR, proxy.https_url, "--origin", proxy.https_url, env=trusting(proxy))

    assert run.status == 1
    assert run.line("FAIL websocket:").endswith(
        f"then closed with 4003 Origin not allowed, although {proxy.https_url} is this server's own address")
    advice = run.lines[run.lines.index(run.line("FAIL websocket:")) + 1:]
    assert advice[0].startswith("     - this origin is the server's own address")
    assert advice[1].startswith(f"     - the doctor sent Origin {proxy.https_url}, as a page from there does")
    assert advice[2] == "         proxy_set_header Host $http_host;"


@needs_nginx
@needs_openssl
async def test_tokens_never_reach_nginxs_access_log(start_server: StartServer, start_nginx: StartNginx) -> None:
    server = start_server(REQUIRE_TOKENS="true")
    proxy = start_nginx(server)
    ssl_context = ssl.create_default_context(cafile=str(proxy.cert))
    async with aiohttp.ClientSession(proxy.https_url) as session:
        alice = await (await session.post("/users", json={"username": "alice"}, ssl=ssl_context)).json()
        room = await (await session.post("/rooms", json={"name": "lobby"}, ssl=ssl_context)).json()
        token, path = alice["token"], f"/ws/{room['id']}/{alice['id']}"
        async with session.ws_connect(f"{path}?token={token}&since=0", ssl=ssl_context) as ws:  # as the page does
            assert (await ws.receive_json(timeout=5))["type"] == "user_joined"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # a script is refused over HTTP
            await session.ws_connect(f"{path}?token=wrong-{token}", ssl=ssl_context)
        assert refused.value.status == 401
        read = await session.get(f"/rooms/{room['id']}/messages?token={token}", ssl=ssl_context,
                                 headers={"Referer": f"https://app.example/?token={token}"})
        assert read.status == 200
    async with aiohttp.ClientSession() as session:  # plain http, redirected
        async with session.get(f"{proxy.http_url}{path}?token={token}", allow_redirects=False) as resp:
            assert resp.status == 301

    log = proxy.access_log.read_text()
    assert f'"GET {path} HTTP/1.1" 101' in log  # the sockets are logged, without their query
    assert f'"GET /rooms/{room["id"]}/messages HTTP/1.1" 200' in log
    assert f'"GET {path} HTTP/1.1" 301' in log
    assert token not in log and "token=" not in log


@needs_nginx
@needs_openssl
async def test_sigterm_closes_sockets_through_nginx_with_1001_and_exits_in_time(
    start_server: StartServer, start_nginx: StartNginx,
) -> None:
    server = start_server(ALLOW_WEBSOCKET_AUTO_ROOMS="true", ALLOW_WEBSOCKET_AUTO_USERS="true")
    proxy = start_nginx(server)
    stop_budget = float(unit_setting("TimeoutStopSec"))
    socket_url = f"wss://{proxy.https_url[8:]}/ws/lobby/u-1?username=alice"

    ssl_context = ssl.create_default_context(cafile=str(proxy.cert))
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(socket_url, ssl=ssl_context) as ws:
            joined = await ws.receive_json(timeout=5)
            assert joined["type"] == "user_joined"
            started = time.monotonic()
            server.process.send_signal(signal.Signals[unit_setting("KillSignal")])
            closing = await ws.receive(timeout=stop_budget)
            assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1001)

    code = await asyncio.to_thread(server.process.wait, stop_budget)
    assert code == 0
    assert time.monotonic() - started < stop_budget


# -- systemd ------------------------------------------------------------------------------


def unit_setting(key: str, unit: Path = UNIT) -> str:
    values = [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith(f"{key}=")]
    assert len(values) == 1, f"deploy/{unit.name} should set {key} once"
    return values[0]


# Each unit, and the name systemd would give it: a template is checked as one of its instances.
UNITS = pytest.mark.parametrize("unit, unit_name", [(UNIT, "chat.service"), (TEMPLATE_UNIT, "chat@8001.service")],
                                ids=["chat.service", "chat@.service"])


def runnable_copy(tmp_path: Path, unit: Path = UNIT, unit_name: str = "chat.service") -> Path:
    """The unit with ExecStart pointing at this checkout, which exists here:
    systemd-analyze refuses a program that is not on the machine."""
    text = replace_once(unit.read_text(), "ExecStart=/opt/chat/.venv/bin/python /opt/chat/run.py",
                        f"ExecStart={sys.executable} {REPO / 'run.py'}")
    copy = tmp_path / unit_name
    copy.write_text(text)
    return copy


@needs_systemd_analyze
@UNITS
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, unit: Path, unit_name: str) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(runnable_copy(tmp_path, unit, unit_name))],
                            capture_output=True, text=True, timeout=60)

    # verify exits 0 even for an unknown key; it only says so. Silence is the pass.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd_analyze
@UNITS
def test_unit_is_hardened(tmp_path: Path, unit: Path, unit_name: str) -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true",
                             str(runnable_copy(tmp_path, unit, unit_name))],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "offline" in result.stderr:
        pytest.skip("this systemd-analyze has no offline security check")

    level = re.search(rf"Overall exposure level for {re.escape(unit_name)}: ([\d.]+) (\w+)", result.stdout)
    assert level, result.stdout + result.stderr
    # 0 is fully locked down, 10 is nothing at all; below 2 systemd calls it OK.
    assert float(level.group(1)) < 2.0, result.stdout


def test_unit_runs_unprivileged_keeps_state_and_stops_gracefully() -> None:
    assert unit_setting("User") == "chat"
    assert unit_setting("StateDirectory") == "chat"
    assert unit_setting("WorkingDirectory") == "%S/chat"
    assert "Environment=DATABASE_PATH=%S/chat/chat.db" in UNIT.read_text().splitlines()
    assert unit_setting("Restart") == "on-failure"
    assert unit_setting("KillSignal") == "SIGTERM"
    assert unit_setting("KillMode") == "mixed"


def unit_lines(unit: Path) -> list[str]:
    """The unit's settings, without comments."""
    return [line for line in unit.read_text().splitlines() if line and not line.startswith("#")]


def test_the_template_unit_is_the_single_unit_with_the_port_as_its_instance() -> None:
    # Written out in full (systemd has no include), so this keeps the copies from drifting apart:
    # a hardening or stop setting added to one unit and not the other fails here.
    single, template = unit_lines(UNIT), unit_lines(TEMPLATE_UNIT)

    assert [line for line in single if line not in template] == [
        "Description=Chat rooms server (aiohttp, WebSocket)",
        "ExecStart=/opt/chat/.venv/bin/python /opt/chat/run.py",
        "Environment=PORT=8000",
    ]
    assert [line for line in template if line not in single] == [
        "Description=Chat rooms server on port %i (aiohttp, WebSocket)",
        # A flag, so that a PORT in the chat.env all instances share cannot put them on one port.
        "ExecStart=/opt/chat/.venv/bin/python /opt/chat/run.py --port %i",
    ]


def test_the_template_units_instances_are_the_sites_upstream() -> None:
    site = SITE.read_text()
    upstream_ports = [int(port) for port in re.findall(r"^    server 127\.0\.0\.1:(\d+) ", site, flags=re.M)]
    instances = re.search(r"systemctl enable --now (chat@\d+(?: chat@\d+)*)", TEMPLATE_UNIT.read_text())

    assert instances, "deploy/chat@.service should say how to enable its instances"
    assert [int(name.removeprefix("chat@")) for name in instances.group(1).split()] == upstream_ports
    assert f"Environment=PORT={upstream_ports[0]}" in unit_lines(UNIT)  # one process: the first line serves


def readme_chat_env() -> dict[str, str]:
    """The settings the README's install steps write to /etc/chat/chat.env."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("cat >> /etc/chat/chat.env <<'EOF'\n", 1)[1].split("EOF", 1)[0]
    lines = (line.split("#", 1)[0].strip() for line in block.splitlines())
    return dict(line.split("=", 1) for line in lines if line)


def test_the_units_settings_with_the_readmes_chat_env_start_a_server(start_server: StartServer) -> None:
    unit_env = dict(line.removeprefix("Environment=").split("=", 1) for line in UNIT.read_text().splitlines()
                    if line.startswith("Environment=") and "%" not in line)
    assert unit_env["ENVIRONMENT"] == "production" and "REQUIRE_TOKENS" not in unit_env
    env = {**unit_env, **readme_chat_env()}
    del env["HOST"], env["PORT"]  # the test server's own (run.py's flags win anyway)

    server = start_server(**env)  # production refuses to start unless REQUIRE_TOKENS is decided

    assert server.get_json("/_debug")["require_tokens"] is True

