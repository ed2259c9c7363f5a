"""The listening socket: a limit on open connections with a polite refusal above it, and accept
failures logged without flooding the log.

aiohttp accepts every connection it is offered, and asyncio reports each accept() that fails for
want of file descriptors with a traceback, up to a backlog's worth in one pass of the loop (its
accept loop goes on after the first failure). A process at its open-file limit wrote 179,431 of
them in 80 s. Here the listening socket's protocol factory counts the open connections and refuses
new ones below that limit, and the loop's exception handler turns those reports into one line a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# Descriptors the process needs besides its connections: 16 at rest (standard streams, the listening
# socket, the event loop's, the database's files), the refusals in flight (each holds one for at
# most REFUSAL_LINGER_SECONDS), and room to spare.
RESERVED_DESCRIPTORS = 64
REFUSAL_DETAIL = "The server has too many open connections; try again later"
REFUSAL_LINGER_SECONDS = 1.0
ACCEPT_FAILURE = "socket.accept() out of system resource"  # asyncio's words
LOG_EVERY_SECONDS = 1.0


def default_connection_limit() -> int:
    """The open-file limit less what the process needs besides its connections (0: no limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 0
    return max(soft - RESERVED_DESCRIPTORS, soft // 2)


class ThrottledLog:
    """At most one line every LOG_EVERY_SECONDS about a kind of event, saying how many there were."""

    def __init__(self, level: int, message: str) -> None:
        self._level = level
        self._message = message
        self._count = 0
        self._last_line = float("-inf")

    def event(self, now: float, *args: object) -> None:
        self._count += 1
        if now - self._last_line >= LOG_EVERY_SECONDS:
            log.log(self._level, f"{self._message} (%d since the last such line)", *args, self._count)
            self._count, self._last_line = 0, now


def log_accept_failures_briefly(loop: asyncio.AbstractEventLoop) -> None:
    """Make the loop log failed accepts as a counted line a second, and everything else as before."""
    failures = ThrottledLog(logging.ERROR, "Cannot accept connections: %s; raise the open-file limit "
                                           "(LimitNOFILE) or lower MAX_OPEN_CONNECTIONS")

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_FAILURE:
            exc = context.get("exception")
            failures.event(loop.time(), getattr(exc, "strerror", None) or exc)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def _refusal() -> bytes:
    body = json.dumps({"detail": REFUSAL_DETAIL}).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
    return head.encode() + body


class Refusal(asyncio.Protocol):
    """A connection over the limit: answered 503 at once, whatever it asks, then closed."""

    answer = _refusal()

    def __init__(self) -> None:
        self._abort: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.answer)
        # A FIN after the answer, and what the client sends meanwhile is read and dropped: closing
        # with its request unread would send a reset, which can destroy the answer before it is read.
        transport.write_eof()
        self._abort = asyncio.get_running_loop().call_later(REFUSAL_LINGER_SECONDS, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort is not None:
            self._abort.cancel()


class CountedRequestHandler(web.RequestHandler):
    """aiohttp's handler of one connection, counted by its ConnectionLimit until it is lost."""

    __slots__ = ("_limit", "_counted")

    def __init__(self, limit: ConnectionLimit, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limit = limit
        self._counted = True

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._limit.open -= 1
        super().connection_lost(exc)


class ConnectionLimit:
    """The listening socket's protocol factory: aiohttp's request handler while fewer than `limit`
    connections are open (0: no limit), a Refusal above.

    A connection counts from the moment it is accepted (several are accepted in one pass of the
    loop, before any of them is told it is connected) until it is lost.
    """

    def __init__(self, server: web.Server, limit: int, handler_args: dict[str, Any]) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._handler_args = handler_args
        self.limit = limit
        self.open = 0
        self._refusals = ThrottledLog(logging.WARNING, "Refused connections over the limit of %d")

    def __call__(self) -> asyncio.Protocol:
        if self.limit and self.open >= self.limit:
            self._refusals.event(self._loop.time(), self.limit)
            return Refusal()
        self.open += 1
        return CountedRequestHandler(self, self._server, loop=self._loop, **self._handler_args)


class LimitedSite(web.BaseSite):
    """A TCP site whose connections go through a ConnectionLimit."""

    __slots__ = ("_host", "_port", "_limit", "_handler_args", "_reuse_port")

    def __init__(self, runner: web.AppRunner, host: str, port: int, limit: int,
                 handler_args: dict[str, Any], reuse_port: bool = False) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._limit = limit
        self._handler_args = handler_args
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        assert self._runner.server is not None
        factory = ConnectionLimit(self._runner.server, self._limit, self._handler_args)
        self._server = await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_port=self._reuse_port)
