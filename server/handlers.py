"""HTTP routes: the REST API, health and metrics, the chat page; and the middlewares."""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import docs
from .auth import Unauthorized, check_member_token, check_user_token, create_user_or_check, presented_token
from .clock import utc_now
from .config import PROCESS_NAME, VERSION, config_key
from .db import MAX_ID, MAX_ROOM_NAME, MAX_USERNAME, MIN_USERNAME, StoreUnavailable, acceptable_id, db_key, storable
from .frames import to_json
from .history import RECENT_PER_ROOM, history_key
from .hub import hub_key
from .limits import creation_limit_key, too_many_creations
from .metrics import metrics_key
from .openapi import openapi_document
from .origins import origin_policy_key
from .request_info import client_address, loggable_path
from .ws import chat_socket, parse_whole_number

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
HEALTH_TIMEOUT = 2.0
MAX_PAGE = 1000
# connect-src 'self' covers ws: and wss: on the page's own host and port (CSP Level 3, as Chromium
# does it); "ws: wss:" would let an injected script open sockets to any host.
CHAT_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
PAGE_POLICIES = {"/chat": CHAT_CONTENT_SECURITY_POLICY, "/docs": docs.CONTENT_SECURITY_POLICY}


class ApiError(Exception):
    """A refused request: answered with `status` and `{"detail": detail}`."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=to_json)


# Service ---------------------------------------------------------------------

async def index(request: web.Request) -> web.Response:
    return json_response({"message": "Chat rooms server", "version": VERSION, "health": "/health",
                          "chat": "/chat", "docs": "/docs", "openapi": "/openapi.json"})


async def health(request: web.Request) -> web.Response:
    hub, db = request.app[hub_key], request.app[db_key]
    sockets = hub.socket_counts()
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            counts = await db.counts()
            sockets = await db.socket_counts(sockets)
    except (sqlite3.Error, StoreUnavailable, ValueError, TimeoutError) as exc:
        log.error("Health check: the database does not answer: %s", exc)
        counts, database = {"messages": None, "rooms": None, "users": None}, "unhealthy"
    else:
        database = "healthy"
    write_failure = db.write_failure
    if write_failure is not None:
        database = "unhealthy"  # it answers reads, but nothing new can be stored
    body = {
        "status": database,
        "timestamp": utc_now(),
        "version": VERSION,
        "environment": request.app[config_key].environment,
        "services": {"api": "healthy", "websocket": "healthy", "database": database},
        "stats": {**sockets, "total_messages": counts["messages"],
                  "rooms": counts["rooms"], "users": counts["users"]},
        "store": db.kind,
        "process": PROCESS_NAME,
    }
    if write_failure is not None:
        body["detail"] = f"Writes fail: {write_failure}"
    return json_response(body, status=200 if database == "healthy" else 503)


async def debug_flags(request: web.Request) -> web.Response:
    config = request.app[config_key]
    counts = await request.app[db_key].counts()
    return json_response({
        "environment": config.environment,
        "auto_create_on_ws": config.allow_websocket_auto_rooms,
        "auto_user_on_ws": config.allow_websocket_auto_users,
        "auto_create_on_join": config.allow_join_auto_rooms,
        "auto_user_on_join": config.allow_join_auto_users,
        "require_tokens": config.require_tokens,
        "has_rooms": counts["rooms"] > 0,
        "has_users": counts["users"] > 0,
    })


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[metrics_key].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


@aiohttp_jinja2.template("chat.html")
async def chat_page(request: web.Request) -> dict[str, Any]:
    return {"version": VERSION}


# Users and rooms ---------------------------------------------------------------

async def create_user(request: web.Request) -> web.Response:
    body = await json_object(request)
    username = text_field(body, "username", MAX_USERNAME).strip()
    if len(username) < MIN_USERNAME:
        raise ApiError(422, "Username must be at least 2 characters long")
    limit_creations(request, 1)
    user, token = await request.app[db_key].create_user(username)
    return json_response({**user, "token": token})


async def list_users(request: web.Request) -> web.Response:
    return await listing(request, request.app[db_key].list_users)


async def get_user(request: web.Request) -> web.Response:
    user = await request.app[db_key].get_user(request.match_info["user_id"])
    if user is None:
        raise ApiError(404, "User not found")
    return json_response(user)


async def create_room(request: web.Request) -> web.Response:
    body = await json_object(request)
    name = text_field(body, "name", MAX_ROOM_NAME).strip()
    if not name:
        raise ApiError(422, "Room name must not be empty")
    limit_creations(request, 1)
    room = await request.app[db_key].create_room(name)
    return json_response({**room, "users": []})


async def list_rooms(request: web.Request) -> web.Response:
    return await listing(request, request.app[db_key].list_rooms)


async def listing(request: web.Request, read_page: Callable[[int, str | None], Awaitable[list[dict[str, Any]]]]
                  ) -> web.Response:
    """A page of users or rooms, in creation order; `Link: <...>; rel="next"` names the next page, if any.

    Pages keep a response small enough to encode on the event loop without holding up the chat.
    """
    limit = int_param(request, "limit", default=MAX_PAGE, low=1, high=MAX_PAGE)
    after = request.query.get("after")
    page = await read_page(limit + 1, None if after is None else cursor_id(after))
    response = json_response(page[:limit])
    if len(page) > limit:
        query = {"limit": str(limit), "after": cursor(page[limit - 1]["id"])}
        response.headers["Link"] = f'<{request.rel_url.with_query(query)}>; rel="next"'
    return response


def cursor(item_id: str) -> str:
    """An opaque cursor naming the last item of a page (clients only pass it back)."""
    return base64.urlsafe_b64encode(item_id.encode()).decode().rstrip("=")


def cursor_id(text: str) -> str:
    try:
        # Bytes that are no id's find no item: an empty page, like any cursor of nothing.
        item_id = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode(
            errors="replace")
    except ValueError:  # binascii.Error, or text that is not even ASCII
        item_id = ""
    if not item_id:
        raise ApiError(422, "after must be the cursor from the Link header of the previous page")
    return item_id


async def get_room(request: web.Request) -> web.Response:
    room = await request.app[db_key].get_room(request.match_info["room_id"])
    if room is None:
        raise ApiError(404, "Room not found")
    return json_response(room)


async def room_messages(request: web.Request) -> web.Response:
    db, room_id = request.app[db_key], request.match_info["room_id"]
    await check_member_token(db, request.app[config_key].require_tokens, room_id, presented_token(request))
    limit = int_param(request, "limit", default=50, low=1, high=MAX_PAGE)
    before = int_param(request, "before", low=0)
    after = int_param(request, "after", low=0)
    if before is not None and after is not None:
        raise ApiError(422, "Give before or after, not both")
    if before is None and after is None and limit <= RECENT_PER_ROOM:
        page = await request.app[history_key].page(room_id, limit)
        if page is None:
            raise ApiError(404, "Room not found")
        return web.Response(body=page, content_type="application/json")
    await require_room(request, room_id)
    return json_response(await db.messages(room_id, limit, before=before, after=after))


async def room_presence(request: web.Request) -> web.Response:
    db, room_id = request.app[db_key], request.match_info["room_id"]
    await check_member_token(db, request.app[config_key].require_tokens, room_id, presented_token(request))
    await require_room(request, room_id)
    here = request.app[hub_key].presence(room_id)
    return json_response(await request.app[db_key].presence(room_id, here))


async def join_room(request: web.Request) -> web.Response:
    config, db, room_id = request.app[config_key], request.app[db_key], request.match_info["room_id"]
    body = await json_object(request)
    user_id = text_field(body, "user_id", MAX_ID)
    username = (text_field(body, "username", MAX_USERNAME, required=False) or "").strip()
    token = text_field(body, "token", 200, required=False) or presented_token(request)
    room_name = await db.room_name(room_id)
    if room_name is None and not (config.allow_join_auto_rooms and acceptable_id(room_id)):
        raise ApiError(404, "Room not found")
    user = await db.get_user(user_id)
    if user is None and not (config.allow_join_auto_users and len(username) >= MIN_USERNAME
                             and acceptable_id(user_id)):
        raise ApiError(404, "User not found")
    limit_creations(request, (room_name is None) + (user is None))
    new_token = None
    if user is None:
        user, new_token = await create_user_or_check(db, config.require_tokens, user_id, username, token)
    else:
        await check_user_token(db, config.require_tokens, user_id, token)
    if room_name is None:
        room_name = (await db.create_room(f"Room {room_id[:8]}", room_id))["name"]
    await db.add_member(room_id, user_id)
    answer = {"message": f"User {user['username']} joined room {room_name}"}
    if new_token:
        answer["token"] = new_token
    return json_response(answer)


def limit_creations(request: web.Request, count: int) -> None:
    """Spend `count` of the client's CREATE_RATE_PER_MINUTE, or refuse with 429 before anything is written."""
    retry_after = request.app[creation_limit_key].retry_after(client_address(request), count)
    if retry_after is not None:
        raise ApiError(429, too_many_creations(retry_after), {"Retry-After": str(retry_after)})


# Input -------------------------------------------------------------------------

async def require_room(request: web.Request, room_id: str) -> None:
    if await request.app[db_key].room_name(room_id) is None:
        raise ApiError(404, "Room not found")


async def json_object(request: web.Request) -> dict[str, Any]:
    limit = request.app[config_key].body_timeout_seconds
    try:
        # A body that trickles in would hold its connection and this handler as long as its sender liked.
        # (aiohttp then reads what is left for up to 10 s, so that the answer arrives, and closes.)
        async with asyncio.timeout(limit or None):
            body = await request.json()
    except TimeoutError:
        raise ApiError(408, f"The request body did not arrive within {limit:g} s") from None
    except ValueError:
        raise ApiError(422, "The body must be valid JSON") from None
    except RecursionError:
        # Thousands of nested brackets fit the body limit but not Python's stack.
        raise ApiError(422, "The body must not be nested this deeply") from None
    if not isinstance(body, dict):
        raise ApiError(422, "The body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, max_length: int, required: bool = True) -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(422, f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise ApiError(422, f"{name} must be a string")
    if len(value) > max_length:
        raise ApiError(422, f"{name} must be at most {max_length} characters")
    if not storable(value):
        raise ApiError(422, f"{name} must be valid Unicode text, without NUL characters")
    return value


def int_param(request: web.Request, name: str, default: int | None = None,
              low: int = 0, high: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = parse_whole_number(raw)
    if value is None or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ApiError(422, f"{name} must be a whole number, {bounds}")
    return value


# Middlewares ---------------------------------------------------------------------

@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every refusal as `{"detail": ...}` with its status; anything unexpected logged and answered 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        response = json_response({"detail": exc.detail}, status=exc.status)
        response.headers.update(exc.headers)
        return response
    except Unauthorized as exc:
        return json_response({"detail": exc.detail}, status=401)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own text is "404: Not Found" unless it says more (e.g. for 413).
        text = exc.text or ""
        detail = exc.reason if text.startswith(f"{exc.status}:") or not text else text
        response = json_response({"detail": detail}, status=exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]  # a 405 must say which methods work (RFC 9110)
        return response
    except StoreUnavailable as exc:
        log.warning("%s %s not done: %s", request.method, loggable_path(request), exc.detail)
        return json_response({"detail": exc.detail}, status=503)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("Error handling %s %s", request.method, loggable_path(request))
        return json_response({"detail": "internal error"}, status=500)


@web.middleware
def host_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """ALLOWED_HOSTS: a request for another name (a DNS-rebinding page's, say) is refused before anything else.

    Sockets too, as it holds nothing while the handler runs: it hands back the
    handler's awaitable rather than awaiting it (see http_only).
    """
    if request.app[origin_policy_key].serves_host(request.headers.get("Host")):
        return handler(request)
    return refuse_host()


async def refuse_host() -> web.Response:
    return json_response({"detail": "Host not allowed"}, status=400)


@web.middleware
async def cors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """CORS from CORS_ORIGINS / CORS_ORIGIN_REGEX, preflights included."""
    origin = request.headers.get("Origin")
    allowed = request.app[origin_policy_key].allows(origin, request.host)
    preflight = request.method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers
    if origin and not allowed and (preflight or request.method not in ("GET", "HEAD")):
        return json_response({"detail": "Origin not allowed"}, status=403)
    if preflight:
        response: web.StreamResponse = web.Response(headers={
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers",
                                                                "Content-Type, Authorization"),
            "Access-Control-Max-Age": "600",
        })
    else:
        response = await handler(request)
    if origin and allowed and not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
        response.headers["Access-Control-Expose-Headers"] = "Link, Retry-After"  # so pages can follow and wait
        if request.app[config_key].cors_allow_credentials:
            response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


@web.middleware
async def metrics_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Request latency by route (sockets are long-lived and counted elsewhere)."""
    started = time.perf_counter()
    response = await handler(request)
    route = request.match_info.route.resource
    if route is not None and route.canonical != "/ws/{room_id}/{user_id}":
        request.app[metrics_key].request_seconds.labels(request.method, route.canonical).observe(
            time.perf_counter() - started)
    return response


def http_only(middleware: Middleware) -> Middleware:
    """Leave the chat socket out of an HTTP middleware.

    A middleware awaits the handler, so its coroutine frame would stay alive as
    long as each socket is open: memory per idle socket, for nothing (the socket
    answers its own errors and checks its own origin).
    """

    @web.middleware
    def skip_sockets(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if request.match_info.route.handler is chat_socket:
            return handler(request)
        return middleware(request, handler)

    return skip_sockets


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if isinstance(response, web.WebSocketResponse):
        return  # headers of a 101 answer would be kept for the socket's lifetime, and mean nothing
    if request.path in PAGE_POLICIES:
        response.headers["Content-Security-Policy"] = PAGE_POLICIES[request.path]
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/_debug", debug_flags)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/chat", chat_page)
    app.router.add_get("/docs", docs.docs_page)
    app.router.add_get("/docs/assets/{name}", docs.docs_asset)
    app.router.add_post("/users", create_user)
    app.router.add_get("/users", list_users)
    app.router.add_get("/users/{user_id}", get_user)
    app.router.add_post("/rooms", create_room)
    app.router.add_get("/rooms", list_rooms)
    app.router.add_get("/rooms/{room_id}", get_room)
    app.router.add_get("/rooms/{room_id}/messages", room_messages)
    app.router.add_get("/rooms/{room_id}/presence", room_presence)
    app.router.add_post("/rooms/{room_id}/join", join_room)
    app.router.add_get("/ws/{room_id}/{user_id}", chat_socket)
    app.router.add_static("/static", STATIC_DIR)
