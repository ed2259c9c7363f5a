"""Why won't my rooms connect? Checks a running chat server and explains.

    python tools/doctor.py http://127.0.0.1:8000          # or: --url http://127.0.0.1:8000
    python tools/doctor.py https://chat.example.com --origin https://app.example.com
    python tools/doctor.py https://chat.example.com --room ROOM_ID --user USER_ID
    python tools/doctor.py https://chat.example.com --production --json
    python tools/doctor.py http://10.0.0.1:8000 http://10.0.0.2:8000   # two processes of one deployment

Checks: the server answers and is healthy; its flags (/_debug) and what they
mean for auto-creation; the room and user (--room, --user); the CORS
preflight for a front end (--origin); that a WebSocket upgrade gets through
(a proxy that drops Upgrade turns it into a plain HTTP answer); a refusal
translated into what to do, in either of its forms: without --origin the
doctor opens the socket as a script, which the server refuses over HTTP (404,
401, 429, 503 with the close code in the body); with --origin as a browser
page, which it lets in and then closes with the code (4004, 4001, 4003, ...).
--production adds the production checklist. /health names the store and the
process that answered: the doctor reports whether that store (SQLite or
PostgreSQL) is reachable. Given a second address, of another process of the
same deployment (each process's own, not the proxy's), it checks that the two
share one database and that a message sent on a socket of the second reaches
a socket of the first promptly; it creates a room "doctor check ..." and two
users for that. Exit status 0 when nothing failed (warnings allowed), 1
otherwise.

Needs only aiohttp (the server's own dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import aiohttp

from _checks import (
    NGINX_UPGRADE_LINES,
    Bases,
    HttpAnswer,
    SocketOutcome,
    add_common_arguments,
    argument_problems,
    close_advice,
    http_call,
    make_session,
    open_socket,
    resolve_bases,
    socket_url,
    validate_base,
)
from _cross_process import PROBES, Delivery, measure_delivery

# An origin no real deployment allows: if the server lets it through, it
# lets every site through.
PROBE_ORIGIN = "https://doctor-probe.invalid"
PROBE_HOST = "doctor-probe.invalid"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
HOST_HEADER_ADVICE = (
    "this origin is the server's own address, which the server always allows: the proxy in "
    "front does not pass on the Host the browser sent; add to the proxy's /ws/ and / "
    "locations (nginx):"
)
HOST_HEADER_FIX = "proxy_set_header Host $http_host;"
# Why the refusal came in the form it did (API.md: a browser cannot read an HTTP refusal of a handshake).
AS_A_BROWSER = ("the doctor sent Origin {origin}, as a page from there does: the server lets a browser's "
                "socket open and then closes it, so that the page can read the code and reason")
AS_A_SCRIPT = ("the doctor sent no Origin, as a script does: the server then refuses over HTTP instead of "
               "upgrading, with the close code in the JSON body; a browser (with an Origin) gets the same "
               "code as a close")


@dataclass
class Check:
    name: str
    status: str  # pass, warn, fail, info, skip
    summary: str
    advice: list[str] = field(default_factory=list)
    fix: str = ""  # a block of configuration to paste, when there is one
    data: dict | None = None


class Doctor:
    def __init__(self, session: aiohttp.ClientSession, bases: Bases, args: argparse.Namespace,
                 other: Bases | None = None):
        self.session = session
        self.bases = bases
        self.other = other  # another process of the same deployment, to check delivery between the two
        self.args = args
        self.checks: list[Check] = []
        self.flags: dict | None = None  # /_debug, when the server gave it

    def add(self, check: Check) -> None:
        self.checks.append(check)

    async def get(self, path: str) -> HttpAnswer:
        return await http_call(self.session, "GET", self.bases.api + path)

    async def run(self) -> list[Check]:
        health = await self.get("/health")
        if not self.check_reachable(health):
            return self.checks
        self.check_healthy(health)
        self.check_store(health)
        await self.check_flags()
        if self.args.room:
            await self.check_room()
        if self.args.user:
            await self.check_user()
        if self.args.origin:
            await self.check_cors(self.args.origin)
        await self.check_websocket()
        if self.other:
            await self.check_other_process(health, self.other)
        if self.args.production:
            await self.check_production()
        return self.checks

    # -- server ---------------------------------------------------------

    def check_reachable(self, health: HttpAnswer) -> bool:
        if health.status is None:
            self.add(Check("reachable", "fail", health.error, [
                "start the server (python run.py, or systemctl start chat) and check "
                "the host and port in the URL",
                "behind a proxy: check that the proxy is running and its site is enabled",
            ]))
            return False
        self.add(Check("reachable", "pass", f"GET {self.bases.api}/health answered {health.status}"))
        return True

    def check_healthy(self, health: HttpAnswer) -> None:
        body = health.body if isinstance(health.body, dict) else {}
        if health.status == 200 and body.get("status") == "healthy":
            stats = body.get("stats") or {}
            summary = (
                f"version {body.get('version', '?')}, environment "
                f"{body.get('environment', '?')}; {stats.get('active_rooms', '?')} active rooms, "
                f"{stats.get('active_users', '?')} active users, {stats.get('connections', '?')} connections"
            )
            self.add(Check("healthy", "pass", summary, data=body))
        elif body.get("status") == "unhealthy":
            self.add(Check("healthy", "fail", f"the server reports unhealthy ({health.status})",
                           [STORE_ADVICE.get(body.get("store"), STORE_ADVICE["sqlite"])], data=body))
        elif health.status == 400 and body.get("detail") == "Host not allowed":
            name = urlsplit(self.bases.api).hostname
            self.add(Check("healthy", "fail", f"/health {health.describe()}: the server does not answer for "
                           f"the name {name}", [
                f"add {name} to ALLOWED_HOSTS (comma-separated names, no port) and restart; behind a proxy, "
                "the proxy must pass the browser's Host (nginx: proxy_set_header Host $http_host;)",
            ]))
        elif health.status in (502, 503, 504):
            self.add(Check("healthy", "fail", f"/health {health.describe()}", [
                "a proxy answers, but it cannot reach the chat server: is the service running "
                "(systemctl status chat; journalctl -u chat), and does the proxy's upstream "
                "point at the server's HOST and PORT?",
            ]))
        else:
            self.add(Check("healthy", "fail", f"/health {health.describe()}", [
                "this does not look like the chat server: check the URL; behind a proxy, "
                "check that the request reaches the chat site and not a default page",
            ]))

    def check_store(self, health: HttpAnswer) -> None:
        body = health.body if isinstance(health.body, dict) else {}
        if "store" not in body:
            return  # a server from before /health named its store
        database = (body.get("services") or {}).get("database", "?")
        summary = f"{body['store']}, database {database}, answered by process {body.get('process', '?')}"
        if database == "healthy":
            self.add(Check("store", "pass", summary))
        else:
            self.add(Check("store", "fail", summary, [STORE_ADVICE.get(body["store"], STORE_ADVICE["sqlite"])]))

    async def check_flags(self) -> None:
        answer = await self.get("/_debug")
        if answer.status != 200 or not isinstance(answer.body, dict):
            self.add(Check("flags", "warn", f"/_debug {answer.describe()}: the effective flags are unknown"))
            return
        self.flags = answer.body
        shown = ", ".join(f"{k}={flag_text(v)}" for k, v in self.flags.items())
        self.add(Check("flags", "info", shown, flag_meanings(self.flags), data=self.flags))

    async def check_room(self) -> None:
        room_id = self.args.room
        answer = await self.get(f"/rooms/{room_id}")
        if answer.status == 200 and isinstance(answer.body, dict):
            members = answer.body.get("users") or []
            summary = f"room {room_id} exists: {answer.body.get('name')!r}, {len(members)} members"
            advice = []
            if self.args.user and self.args.user not in members:
                advice.append("the user is not a member yet; joining or connecting makes it one")
            self.add(Check("room", "pass", summary, advice, data=answer.body))
        elif answer.status == 404:
            self.add(self.missing("room", room_id, "auto_create_on_ws", "a socket for it creates it", "Room not found", [
                "create the room (POST /rooms) and use the id it answers with; clients cannot "
                "choose room ids unless auto-creation is on",
                "an id that used to work may come from another database: did the server "
                "start with a different DATABASE_PATH (or a fresh one)?",
            ]))
        else:
            self.add(Check("room", "fail", f"GET /rooms/{room_id} {answer.describe()}"))

    async def check_user(self) -> None:
        user_id = self.args.user
        answer = await self.get(f"/users/{user_id}")
        if answer.status == 200 and isinstance(answer.body, dict):
            summary = f"user {user_id} exists: {answer.body.get('username')!r}"
            self.add(Check("user", "pass", summary, data=answer.body))
        elif answer.status == 404:
            self.add(self.missing("user", user_id, "auto_user_on_ws", "a socket for it with ?username= creates it", "User not found", [
                "create the user (POST /users) and use the id it answers with",
                "or set ALLOW_WEBSOCKET_AUTO_USERS=true and open the socket with ?username=",
            ]))
        else:
            self.add(Check("user", "fail", f"GET /users/{user_id} {answer.describe()}"))

    def missing(self, what: str, ident: str, auto_flag: str, auto_effect: str, reason: str,
                advice: list[str]) -> Check:
        if self.flags and self.flags.get(auto_flag):
            return Check(what, "warn", f"{what} {ident} does not exist, but {auto_effect} "
                         f"({auto_flag}=true)")
        summary = f"{what} {ident} does not exist: a socket for it is refused with 4004 {reason}"
        return Check(what, "fail", summary, advice)

    # -- CORS -----------------------------------------------------------

    async def preflight(self, origin: str) -> HttpAnswer:
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        url = f"{self.bases.api}/rooms"
        return await http_call(self.session, "OPTIONS", url, headers=headers)

    async def check_cors(self, origin: str) -> None:
        answer = await self.preflight(origin)
        allowed = answer.headers.get("Access-Control-Allow-Origin")
        if answer.status is None:
            self.add(Check("cors", "fail", answer.error))
        elif answer.status < 300 and allowed in (origin, "*"):
            self.add(Check("cors", "pass", f"preflight from {origin} allowed "
                           f"(Access-Control-Allow-Origin: {allowed})"))
        else:
            got = "no Access-Control-Allow-Origin" if not allowed else f"Access-Control-Allow-Origin: {allowed}"
            summary = (f"origin {origin} is refused: the preflight {answer.describe()} with {got}; "
                       f"a page at {origin} cannot call the API, and its sockets are closed with 4003")
            if self.origin_is_own_address():
                self.add(Check("cors", "fail", summary, [HOST_HEADER_ADVICE], fix=HOST_HEADER_FIX))
            else:
                self.add(Check("cors", "fail", summary, cors_advice(origin)))

    # -- WebSocket --------------------------------------------------------

    async def check_websocket(self) -> None:
        room, user, probing = self.socket_target()
        query = {"token": self.args.token} if self.args.token else {}
        url = socket_url(self.bases.ws, room, user, query)
        outcome = await open_socket(self.session, url, origin=self.args.origin,
                                    wait_seconds=self.args.timeout)
        try:
            self.add(self.judge_socket(outcome, url.split("?")[0], probing))
        finally:
            if outcome.ws is not None:
                await outcome.ws.close()

    def socket_target(self) -> tuple[str, str, bool]:
        """The room and user to open a socket for, and whether they are a probe.

        Without --room/--user the doctor uses a made-up user id and no
        username, which the server refuses with 4004 after accepting the
        handshake: proof enough that the upgrade got through. The server
        checks the user before it auto-creates anything, so nothing is created.
        """
        if self.args.room and self.args.user:
            return self.args.room, self.args.user, False
        probe = f"doctor-probe-{secrets.token_hex(4)}"
        return self.args.room or probe, self.args.user or probe, True

    def judge_socket(self, outcome: SocketOutcome, url: str, probing: bool) -> Check:
        if outcome.kind == "plain_http":
            # Behind nginx the answer names nginx: that is the piece to fix.
            proxy = outcome.server_header if "aiohttp" not in outcome.server_header else ""
            via = f" (answered by {proxy})" if proxy else ""
            return Check("websocket", "fail", f"GET {url}: {outcome.describe()}{via}", [
                "a proxy between you and the server does not forward the Upgrade and "
                "Connection headers, so the server saw an ordinary GET",
                "add these lines to the proxy's site (nginx shown; deploy/nginx.conf has the "
                "whole site), then reload it (nginx -t && systemctl reload nginx):",
            ], fix=NGINX_UPGRADE_LINES)
        if outcome.kind == "no_route":
            return Check("websocket", "fail", f"GET {url}: {outcome.describe()}", [
                "check the URL; behind a proxy, check that its location passes /ws/ to the server",
            ])
        if outcome.kind in ("proxy_error", "unreachable"):
            return Check("websocket", "fail", f"GET {url}: {outcome.describe()}", [
                "check that the server is running and that the proxy's upstream points at it",
            ])
        if outcome.kind in ("closed", "refused"):
            return self.judge_refusal(outcome, url, probing)
        if not isinstance(outcome.first_frame, dict):
            return Check("websocket", "warn", f"{url}: upgraded, but {outcome.error or 'the first frame was not JSON'}")
        kind = outcome.first_frame.get("type")
        return Check("websocket", "pass", f"{url}: upgraded (101) and received {kind!r}")

    def judge_refusal(self, outcome: SocketOutcome, url: str, probing: bool) -> Check:
        """A socket the server would not keep: closed after the upgrade (a browser's) or refused over HTTP (a script's)."""
        seen = f"upgraded (101), then {outcome.describe()}" if outcome.kind == "closed" else outcome.describe()
        form = AS_A_BROWSER.format(origin=self.args.origin) if outcome.kind == "closed" else AS_A_SCRIPT
        data = {"form": "close" if outcome.kind == "closed" else "http", "status": outcome.status,
                "close_code": outcome.close_code, "reason": outcome.close_reason}
        if probing and outcome.close_code == 4004:
            # The chat server itself answered the upgrade (a plain GET gets 400), so it got through.
            return Check("websocket", "pass", f"{url}: {seen}, as expected for the made-up id the doctor "
                         "used; give --room and --user to try a real pair", [form], data=data)
        if outcome.close_code == 4003 and self.origin_is_own_address():
            # The server always allows its own host, so it was shown another Host.
            return Check("websocket", "fail", f"{url}: {seen}, although {self.args.origin} is this "
                         "server's own address", [HOST_HEADER_ADVICE, form], fix=HOST_HEADER_FIX, data=data)
        advice = [close_advice(outcome.close_code, outcome.close_reason)]
        if outcome.close_code == 4003:
            advice.append(cors_advice(self.args.origin or "")[0])
        return Check("websocket", "fail", f"{url}: {seen}", [*advice, form], data=data)

    def origin_is_own_address(self) -> bool:
        if not self.args.origin:
            return False
        origin, api = urlsplit(self.args.origin), urlsplit(self.bases.api)
        return (origin.scheme, origin.netloc) == (api.scheme, api.netloc)

    # -- two processes ------------------------------------------------------

    async def check_other_process(self, health: HttpAnswer, other: Bases) -> None:
        name = "between processes"
        other_health = await http_call(self.session, "GET", other.api + "/health")
        first, second = (answer.body if isinstance(answer.body, dict) else {} for answer in (health, other_health))
        if other_health.status is None or "process" not in second:
            self.add(Check(name, "fail", f"{other.api}/health {other_health.describe()}", [
                "the second address must be another process of this deployment, reached directly "
                "(e.g. http://127.0.0.1:8001), and the server there must name its process in /health",
            ]))
            return
        if first.get("process") == second["process"]:
            self.add(Check(name, "warn", f"both addresses were answered by process {second['process']}: "
                           "nothing to compare", [
                "give two processes' own addresses (e.g. http://127.0.0.1:8000 http://127.0.0.1:8001), "
                "not the proxy's twice",
            ]))
            return
        stores = f"{first.get('process')} ({first.get('store')}) and {second['process']} ({second.get('store')})"
        delivery = await measure_delivery(self.session, self.bases, other, self.args.timeout)
        self.add(judge_delivery(delivery, stores, self.bases.api, other.api))

    # -- production -------------------------------------------------------

    async def check_production(self) -> None:
        self.add(self.production_environment())
        self.add(self.production_auto_creation())
        self.add(self.production_tokens())
        self.add(await self.production_cors())
        self.add(await self.production_hosts())
        self.add(self.production_tls())

    def production_environment(self) -> Check:
        name = "production: environment"
        env = (self.flags or {}).get("environment")
        if env == "production":
            return Check(name, "pass", "ENVIRONMENT=production")
        if env is None:
            return Check(name, "skip", "unknown: /_debug did not answer")
        return Check(name, "fail", f"ENVIRONMENT={env}", [
            "set ENVIRONMENT=production (in /etc/chat/chat.env for the systemd unit) and "
            "restart: it sets the production defaults (auto-creation on, CORS closed to "
            "other origins)",
        ])

    def production_auto_creation(self) -> Check:
        name = "production: auto-creation"
        if not self.flags:
            return Check(name, "skip", "unknown: /_debug did not answer")
        keys = [k for k in ("auto_create_on_ws", "auto_user_on_ws", "auto_create_on_join",
                            "auto_user_on_join") if k in self.flags]
        off = [k for k in keys if not self.flags.get(k)]
        if not off:
            return Check(name, "pass", "rooms and users are created on demand, as old front ends expect")
        return Check(name, "warn", f"off: {', '.join(off)}", [
            "front ends must create users and rooms before connecting (POST /users, POST /rooms, "
            "join, then the socket), or their sockets close with 4004",
            "or set ALLOW_WEBSOCKET_AUTO_ROOMS, ALLOW_WEBSOCKET_AUTO_USERS, ALLOW_JOIN_AUTO_ROOMS "
            "and ALLOW_JOIN_AUTO_USERS to true",
        ])

    def production_tokens(self) -> Check:
        name = "production: tokens"
        required = (self.flags or {}).get("require_tokens")
        if required is None:
            return Check(name, "skip", "not reported by /_debug; check REQUIRE_TOKENS yourself")
        if required:
            return Check(name, "pass", "REQUIRE_TOKENS=true")
        return Check(name, "fail", "REQUIRE_TOKENS=false: user ids are public (GET /users), and anyone "
                     "who knows one can speak as that user", [
            "set REQUIRE_TOKENS=true (in /etc/chat/chat.env for the systemd unit) once every client sends "
            "the token from POST /users (the chat page does); false only keeps old clients that send none working",
        ])

    async def production_cors(self) -> Check:
        name = "production: CORS origins"
        probe = await self.preflight(PROBE_ORIGIN)
        if probe.status is None:
            return Check(name, "skip", probe.error)
        if probe.status < 300 and probe.headers.get("Access-Control-Allow-Origin"):
            return Check(name, "fail", f"any origin is allowed (even {PROBE_ORIGIN})", [
                "set CORS_ORIGINS to your front ends' origins (comma-separated, exact), "
                "and make sure CORS_ORIGIN_REGEX does not match everything",
            ])
        if not self.args.origin:
            return Check(name, "warn", "unknown origins are refused; which front end should be "
                         "allowed was not given", ["run again with --origin https://your-front-end"])
        return Check(name, "pass", f"unknown origins are refused; {self.args.origin}: see the cors check")

    async def production_hosts(self) -> Check:
        name = "production: allowed hosts"
        probe = await http_call(self.session, "GET", self.bases.api + "/health", headers={"Host": PROBE_HOST})
        if probe.status is None:
            return Check(name, "skip", probe.error)
        if probe.status == 400:
            return Check(name, "pass", f"a request for another host name ({PROBE_HOST}) is refused")
        return Check(name, "warn", f"a request for any host name is served (even {PROBE_HOST}, answered "
                     f"{probe.status}): a page on a name an attacker points at this server (DNS rebinding) "
                     "counts as the server's own", [
            "set ALLOWED_HOSTS to the names the server is reached by, e.g. "
            "ALLOWED_HOSTS=chat.example.com,127.0.0.1 (any port of a listed name is served)",
        ])

    def production_tls(self) -> Check:
        name = "production: https/wss"
        parts = urlsplit(self.bases.api)
        if parts.scheme == "https":
            return Check(name, "pass", f"{self.bases.api} and {self.bases.ws}")
        advice = [
            "browsers on an https page refuse ws:// sockets (mixed content), and tokens and "
            "messages would travel in clear: put the server behind TLS (deploy/nginx.conf) "
            "and use https:// and wss:// URLs",
        ]
        if parts.hostname in LOOPBACK_HOSTS:
            return Check(name, "warn", f"{self.bases.api} is plain http on loopback: fine behind "
                         "a TLS proxy; run the doctor against the public https:// URL too", advice)
        return Check(name, "fail", f"{self.bases.api} is plain http", advice)


def judge_delivery(delivery: Delivery, stores: str, first: str, second: str) -> Check:
    name = "between processes"
    data = {"room": delivery.room, "seconds": delivery.seconds}
    if delivery.problem == "setup":
        return Check(name, "fail", f"could not prepare the check through {first}: {delivery.detail}", [
            "the check creates a room and two users through the first address; see the checks above",
        ], data=data)
    if delivery.problem == "first socket":
        return Check(name, "fail", f"a socket on {first} for the check's room: {delivery.detail}", data=data)
    if delivery.refusal is not None and delivery.refusal.close_code == 4004:
        return Check(name, "fail", f"{stores}: the room created through {first} does not exist on {second} "
                     f"({delivery.detail})", [
            "the processes do not share a database: check DATABASE_URL on each (the same host, port and "
            "database); processes share rooms only through one PostgreSQL, never through SQLite files",
        ], data=data)
    if delivery.problem == "second socket":
        return Check(name, "fail", f"a socket on {second} for the check's room: {delivery.detail}", data=data)
    if delivery.problem == "lost":
        return Check(name, "fail", f"{stores}: messages sent on {second} did not reach a socket on {first}: "
                     f"{delivery.detail}", [
            "the room exists on both, so they share a database, yet delivery failed: read both servers' logs "
            "(journalctl -u 'chat@*'); each process must reach PostgreSQL with its own connections",
        ], data=data)
    timing = f"{PROBES} messages sent on {second} reached {first} in {delivery.median * 1000:.0f} ms (median)"
    if delivery.slow:
        return Check(name, "warn", f"{stores}: delivery between processes took {delivery.median:.1f} s: "
                     f"{timing}", [
            "notifications are not arriving, so each process finds the other's messages only by its "
            "one-second poll: check DATABASE_NOTIFICATIONS (true, the default) on each, and that "
            "DATABASE_URL does not go through a pooler in transaction mode (PgBouncer), which cannot "
            "carry LISTEN",
        ], data=data)
    return Check(name, "pass", f"{stores}: {timing}", data=data)


# What to do when /health says the database does not answer, per store.
STORE_ADVICE = {
    "sqlite": "the database does not answer: check that DATABASE_PATH is on a writable, non-full disk "
              "(the systemd unit keeps it in /var/lib/chat) and read the server log",
    "postgresql": "PostgreSQL does not answer this process: check that it is running (systemctl status "
                  "postgresql), that DATABASE_URL names its host, port, database, user and password, "
                  "that pg_hba.conf lets this host in, and read the server log",
}


def flag_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def flag_meanings(flags: dict) -> list[str]:
    """What the flags of /_debug mean for a client that connects."""
    lines = []
    if flags.get("auto_create_on_ws"):
        lines.append("a socket for an unknown room creates it")
    else:
        lines.append("a socket for an unknown room is refused with 4004 Room not found: create the "
                     "room first (POST /rooms), or set ALLOW_WEBSOCKET_AUTO_ROOMS=true")
    if "auto_user_on_ws" in flags:
        if flags["auto_user_on_ws"]:
            lines.append("a socket for an unknown user with ?username= creates the user")
        else:
            lines.append("a socket for an unknown user is refused with 4004 User not found: create "
                         "the user first (POST /users), or set ALLOW_WEBSOCKET_AUTO_USERS=true")
    if flags.get("auto_create_on_join"):
        lines.append("joining an unknown room (POST /rooms/{id}/join) creates it")
    else:
        lines.append("joining an unknown room answers 404 Room not found (ALLOW_JOIN_AUTO_ROOMS=false)")
    if flags.get("auto_user_on_join"):
        lines.append("joining with an unknown user_id and a username creates the user")
    else:
        lines.append("joining with an unknown user_id answers 404 User not found: create users "
                     "with POST /users first (ALLOW_JOIN_AUTO_USERS=false)")
    if flags.get("require_tokens"):
        lines.append("sockets and joins of existing users must carry the user's token, or "
                     "they are refused (4001 Unauthorized)")
    if flags.get("has_rooms") is False:
        lines.append("no room exists yet")
    if flags.get("has_users") is False:
        lines.append("no user exists yet")
    return lines


def cors_advice(origin: str) -> list[str]:
    return [
        f"add the origin to CORS_ORIGINS (exact: scheme, host and port, no path or trailing "
        f"slash), e.g. CORS_ORIGINS={origin}, or match it with CORS_ORIGIN_REGEX; then restart",
    ]


# -- output ---------------------------------------------------------------


def problems(checks: list[Check]) -> int:
    return sum(1 for c in checks if c.status == "fail")


def render_text(bases: Bases, checks: list[Check]) -> str:
    lines = [f"chat doctor for {bases.api} (socket {bases.ws})", ""]
    for check in checks:
        lines.append(f"{check.status.upper():4} {check.name}: {check.summary}")
        lines.extend(f"     - {line}" for line in check.advice)
        lines.extend(f"         {line}" for line in check.fix.splitlines())
    count = problems(checks)
    lines.append("")
    lines.append("no problems found" if count == 0 else
                 f"{count} problem{'s' if count > 1 else ''} found (see FAIL above)")
    return "\n".join(lines)


def render_json(bases: Bases, checks: list[Check]) -> str:
    report = {
        "url": bases.api,
        "socket_url": bases.ws,
        "ok": problems(checks) == 0,
        "problems": problems(checks),
        "checks": [asdict(c) for c in checks],
    }
    return json.dumps(report, indent=2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("urls", nargs="*", metavar="URL", help="the server's address (or give it as --url); a "
                        "second address: another process of the same deployment, to check that the two share rooms")
    add_common_arguments(parser)  # --room and --user are checked, then used for the socket
    parser.add_argument("--production", action="store_true", help="add the production checklist")
    args = parser.parse_args(argv)
    urls = ([args.url] if args.url else []) + args.urls
    if len(urls) > 2:
        parser.error("at most two addresses: a process (URL or --url), and another process of the same deployment")
    args.url, args.other_url = (urls + [None, None])[:2]
    return args


async def run(args: argparse.Namespace) -> int:
    bases = resolve_bases(args.url)
    other = resolve_bases(args.other_url) if args.other_url else None
    mistakes = argument_problems(args, bases)
    if other and (problem := validate_base(other.api)):
        mistakes.append(problem)
    if mistakes:
        for problem in mistakes:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    async with make_session(args.timeout, args.insecure) as session:
        checks = await Doctor(session, bases, args, other).run()
    print(render_json(bases, checks) if args.json else render_text(bases, checks))
    return 1 if problems(checks) else 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
