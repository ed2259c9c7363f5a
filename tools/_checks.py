"""Pieces shared by ws_network_smoke.py and doctor.py.

Only the standard library and aiohttp (the server's own dependency), so the
tools run from a checkout with `python tools/<tool>.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import aiohttp

DEFAULT_API_BASE = "http://127.0.0.1:8000"

# What to do about each close code of API.md, in the words a person needs.
CLOSE_CODE_ADVICE = {
    (4004, "Room not found"): (
        "the room does not exist on this server: create it first (POST /rooms, "
        "then use the id it returns), or set ALLOW_WEBSOCKET_AUTO_ROOMS=true"
    ),
    (4004, "User not found"): (
        "the user does not exist on this server: create it first (POST /users), "
        "or set ALLOW_WEBSOCKET_AUTO_USERS=true and add ?username= to the socket URL"
    ),
    (4004, ""): (
        "the room or user does not exist: create them first (POST /users, "
        "POST /rooms, POST /rooms/{id}/join) before opening the socket"
    ),
    (4001, ""): (
        "the server requires tokens (REQUIRE_TOKENS=true) and this socket "
        "carried none or a wrong one: pass the token from POST /users as "
        "?token=..., or turn REQUIRE_TOKENS off for clients that send none"
    ),
    (4003, ""): (
        "the page's Origin is not allowed: add it to CORS_ORIGINS "
        "(comma-separated exact origins, e.g. https://app.example.com) or match "
        "it with CORS_ORIGIN_REGEX, then restart the server"
    ),
    (1001, ""): "the server is shutting down or restarting: reconnect in a moment",
    (1008, "Too many connections"): (
        "this user (or this address) already holds as many sockets as the server allows "
        "(MAX_CONNECTIONS_PER_USER, MAX_CONNECTIONS_PER_ADDRESS): close the others, or raise the limit"
    ),
    (1008, ""): (
        "the server closed the socket for a policy reason (flooding, or a "
        "client too slow to keep up): send less often, read frames promptly"
    ),
    (1009, ""): "a frame was larger than MAX_FRAME_BYTES: send smaller messages",
    (1013, ""): (
        "another program held the database's write lock for seconds (a sqlite3 "
        "shell with a transaction open on chat.db): end that transaction, then reconnect"
    ),
    (1006, ""): (
        "the connection dropped without a close frame: a proxy or load "
        "balancer timed out or cut it (raise proxy_read_timeout), or the "
        "server crashed (check its log)"
    ),
}


def describe_close(code: int | None, reason: str) -> str:
    shown = code if code is not None else "no code"
    return f"closed with {shown} {reason}" if reason else f"closed with {shown}"


def close_advice(code: int | None, reason: str = "") -> str:
    code = 1006 if code is None else code
    advice = CLOSE_CODE_ADVICE.get((code, reason)) or CLOSE_CODE_ADVICE.get((code, ""))
    return advice or "see the close codes in API.md"


# The lines a reverse proxy needs so that a WebSocket handshake reaches the
# server as an upgrade and not as a plain GET.
NGINX_UPGRADE_LINES = """\
# in the http {} block:
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      '';
}
# in the location that serves /ws/:
proxy_http_version 1.1;
proxy_set_header Upgrade $http_upgrade;
proxy_set_header Connection $connection_upgrade;
proxy_set_header Host $http_host;
proxy_read_timeout 1h;
proxy_send_timeout 1h;"""

UPGRADE_FIX_ONE_LINE = (
    "the proxy in front of the server must forward the Upgrade and Connection "
    "headers (nginx: proxy_http_version 1.1; proxy_set_header Upgrade "
    "$http_upgrade; proxy_set_header Connection \"upgrade\"; see deploy/nginx.conf)"
)


@dataclass(frozen=True)
class Bases:
    api: str  # http(s)://host[:port][/prefix], no trailing slash
    ws: str  # ws(s)://host[:port][/prefix], no trailing slash


def _swap_scheme(url: str, mapping: dict[str, str]) -> str:
    parts = urlsplit(url)
    scheme = mapping.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def to_api_base(url: str) -> str:
    return _swap_scheme(url, {"ws": "http", "wss": "https"})


def to_ws_base(url: str) -> str:
    return _swap_scheme(url, {"http": "ws", "https": "wss"})


def resolve_bases(url: str | None, env: dict[str, str] | None = None) -> Bases:
    """--url wins; else API_BASE / WS_BASE as the old smoke script read them.

    A WS_BASE left unset follows API_BASE (https -> wss), so pointing the tool
    at a TLS site takes one variable, not two.
    """
    env = os.environ if env is None else env
    if url:
        return Bases(to_api_base(url), to_ws_base(url))
    api = to_api_base(env.get("API_BASE") or DEFAULT_API_BASE)
    ws = to_ws_base(env.get("WS_BASE") or api)
    return Bases(api, ws)


def validate_base(url: str) -> str | None:
    """Why the URL cannot be used, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        return f"{url!r} is not an http(s):// or ws(s):// URL with a host"
    return None


def origin_problem(origin: str) -> str | None:
    """Why --origin is not an origin a browser would send, or None."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("",):
        return (f"--origin {origin!r} is not an origin: write scheme://host[:port] with no "
                "path or trailing slash, as a browser sends it")
    return None


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags both tools take, with the same meaning in each."""
    parser.add_argument("--url", help="server address, http(s):// or ws(s)://; default: API_BASE / WS_BASE, "
                        "else http://127.0.0.1:8000")
    parser.add_argument("--origin", help="a front end's origin, e.g. https://app.example.com: the socket is "
                        "opened with it, as a page from there opens it (a refusal is then a close); without "
                        "it, as a script (a refusal is then an HTTP answer)")
    parser.add_argument("--room", help="an existing room id to use")
    parser.add_argument("--user", help="an existing user id to use")
    parser.add_argument("--token", help="the token of --user, when the server requires tokens")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--insecure", action="store_true", help="accept any TLS certificate (self-signed test sites)")


def argument_problems(args: argparse.Namespace, bases: Bases) -> list[str]:
    """What is wrong with the common arguments, for an `error:` line each."""
    found = [validate_base(bases.api) or validate_base(bases.ws)]  # one line for one bad --url
    if args.origin:
        found.append(origin_problem(args.origin))
    if args.token and not args.user:
        found.append("--token is the token of --user: give --user too")
    return [problem for problem in found if problem]


# ws_connect drops the body of a handshake answered without an upgrade, and the server's
# refusal of a script's socket is in that body: open_socket sets a list here, and the
# session's trace hook below fills it.
_handshake_body: ContextVar[list[bytes] | None] = ContextVar("handshake_body", default=None)


async def _keep_handshake_body(session: aiohttp.ClientSession, context: Any,
                               params: aiohttp.TraceRequestEndParams) -> None:
    kept = _handshake_body.get()
    if kept is not None and params.response.status != 101:
        kept.append(await params.response.read())


def make_session(timeout_seconds: float, insecure: bool) -> aiohttp.ClientSession:
    # ssl=False accepts any certificate: for a self-signed test site only.
    connector = aiohttp.TCPConnector(ssl=False) if insecure else aiohttp.TCPConnector()
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(_keep_handshake_body)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, trace_configs=[trace])


@dataclass
class HttpAnswer:
    """An HTTP exchange reduced to what the checks look at."""

    status: int | None = None  # None: no answer at all
    body: Any = None  # parsed JSON, or None
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""  # why there was no answer

    @property
    def detail(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("detail"), str):
            return self.body["detail"]
        return ""

    def describe(self) -> str:
        """One phrase for a report: 'answered 404 Room not found'."""
        if self.status is None:
            return self.error
        if self.detail:
            return f"answered {self.status} {self.detail}"
        if self.body is None and self.text:
            kind = self.headers.get("Content-Type", "unknown type").split(";")[0]
            server = self.headers.get("Server")
            origin = f" from {server}" if server else ""
            return f"answered {self.status} with a non-JSON body ({kind}{origin})"
        return f"answered {self.status}"


def connection_error_text(url: str, exc: BaseException) -> str:
    host = urlsplit(url).netloc
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {host} was refused ({exc.certificate_error})"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake with {host} failed ({exc})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        reason = os.strerror(errno) if errno else str(exc.os_error)
        return f"cannot connect to {host} ({reason}): is the server running there?"
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer from {host} in time"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{host} closed the connection without answering"
    return f"request to {host} failed ({type(exc).__name__}: {exc})"


async def http_call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> HttpAnswer:
    try:
        async with session.request(method, url, json=json_body, headers=headers) as resp:
            text = await resp.text(errors="replace")
            answer = HttpAnswer(status=resp.status, text=text, headers=dict(resp.headers))
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return HttpAnswer(error=connection_error_text(url, exc))
    try:
        answer.body = json.loads(text) if text else None
    except ValueError:
        answer.body = None
    return answer


@dataclass
class SocketOutcome:
    """How an attempt to open /ws/{room}/{user} went, before any chatting."""

    # "open"; "closed" (upgraded, then closed); "refused" (the server answered the handshake over
    # HTTP with its close code, as it does for a client without Origin); "plain_http", "no_route",
    # "proxy_error", "unreachable"
    kind: str
    status: int | None = None  # HTTP status when the handshake was not upgraded
    close_code: int | None = None
    close_reason: str = ""
    first_frame: Any = None  # the first JSON frame of an open socket
    error: str = ""
    server_header: str = ""  # who answered a refused handshake (e.g. nginx)
    ws: aiohttp.ClientWebSocketResponse | None = None

    def describe(self) -> str:
        if self.kind == "closed":
            return describe_close(self.close_code, self.close_reason)
        if self.kind == "refused":
            return f"refused over HTTP with {self.status} {self.close_reason} (close code {self.close_code})"
        if self.kind == "plain_http":
            return (
                f"the handshake was answered with plain HTTP {self.status} instead "
                "of 101 Switching Protocols: the WebSocket upgrade did not get through"
            )
        if self.kind == "no_route":
            return "the handshake was answered 404: nothing serves /ws/ at this address"
        if self.kind == "proxy_error":
            return f"the handshake was answered {self.status}: the proxy cannot reach the server"
        return self.error


def refusal_of(status: int, body: bytes) -> SocketOutcome | None:
    """The server's refusal of a handshake without Origin: its JSON body names the close code."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if not (isinstance(answer, dict) and isinstance(answer.get("close_code"), int)):
        return None
    return SocketOutcome("refused", status=status, close_code=answer["close_code"],
                         close_reason=str(answer.get("detail", "")))


def classify_refused_handshake(status: int) -> str:
    if status == 404:
        return "no_route"
    if status in (502, 503, 504):
        return "proxy_error"
    # 200, 400, 426 and the like: something answered the GET as a plain
    # request, which is what the server sees when a proxy drops Upgrade.
    return "plain_http"


async def open_socket(
    session: aiohttp.ClientSession,
    url: str,
    *,
    origin: str | None,
    wait_seconds: float,
) -> SocketOutcome:
    """Open the socket and read its first frame.

    With an Origin (as a browser) the server accepts the handshake and then
    closes a socket that may not stay, so a refusal is the first frame. Without
    one (as a script) it answers a refusal over HTTP instead of upgrading.
    """
    headers = {"Origin": origin} if origin else None
    body: list[bytes] = []
    _handshake_body.set(body)
    try:
        ws = await session.ws_connect(url, headers=headers, autoclose=False, heartbeat=None)
    except aiohttp.WSServerHandshakeError as exc:
        refusal = refusal_of(exc.status, body[0] if body else b"")
        if refusal is not None:
            return refusal
        server = (exc.headers or {}).get("Server", "")
        return SocketOutcome(
            classify_refused_handshake(exc.status), status=exc.status, server_header=server
        )
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return SocketOutcome("unreachable", error=connection_error_text(url, exc))
    finally:
        _handshake_body.set(None)
    return await _first_frame(ws, wait_seconds)


async def _first_frame(ws: aiohttp.ClientWebSocketResponse, wait_seconds: float) -> SocketOutcome:
    try:
        msg = await ws.receive(timeout=wait_seconds)
    except asyncio.TimeoutError:
        return SocketOutcome("open", ws=ws, error=f"no frame within {wait_seconds:g} s")
    if msg.type == aiohttp.WSMsgType.CLOSE:
        await ws.close()
        return SocketOutcome("closed", close_code=msg.data, close_reason=msg.extra or "")
    if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
        return SocketOutcome("closed", close_code=ws.close_code, error=str(msg.data or ""))
    try:
        frame = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else None
    except ValueError:
        frame = None
    return SocketOutcome("open", ws=ws, first_frame=frame)


def socket_url(ws_base: str, room_id: str, user_id: str, query: dict[str, str]) -> str:
    url = f"{ws_base}/ws/{quote(room_id, safe='')}/{quote(user_id, safe='')}"
    return f"{url}?{urlencode(query)}" if query else url
