"""Start the chat server: python run.py [--host H] [--port P] [--db PATH | --database-url URL] [--workers N]."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sqlite3
import sys
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from server import create_app
from server.config import Config, ConfigError, redact
from server.db import DatabaseInUse, MigrationError, StoreUnavailable
from server.listener import LimitedSite, default_connection_limit, log_accept_failures_briefly
from server.request_info import loggable_path
from server.workers import supervise

# Seconds a stop (SIGINT or SIGTERM) waits for requests still running after sockets got 1001.
SHUTDOWN_TIMEOUT = 5.0


class AccessLogger(AbstractAccessLogger):
    """One line per request, without the query string: a socket's `?token=` must not reach the logs."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug('%s "%s %s" %d %.1fms', request.remote, request.method, loggable_path(request),
                          response.status, time * 1000)


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse as an ERROR with a traceback, although it answers 400:
    any scanner could fill the log with them. One WARNING line says the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and exc.code == 400:
            record.msg, record.args = "Malformed request from %s: %s", (*record.args[:1], exc.message.splitlines()[0])
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def serve(config: Config, reuse_port: bool) -> None:
    """Serve until SIGINT or SIGTERM, as aiohttp's web.run_app does, but on a LimitedSite."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    log_accept_failures_briefly(loop)
    main = loop.create_task(listen(config, reuse_port))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        # Stopped while listen() waits: its cleanup runs first, while every socket's task is alive
        # to close with 1001; only then is what is left cancelled.
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(main)
    finally:
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def listen(config: Config, reuse_port: bool) -> None:
    handler_args: dict[str, Any] = {
        # aiohttp closes a connection that has not sent a whole request's headers this long after it
        # opened, or after its last answer: a header timeout and the keep-alive time in one.
        "keepalive_timeout": config.header_timeout_seconds,
        # Per-request lines only at DEBUG: the proxy in front logs requests, and they cost CPU.
        "access_log": logging.getLogger("aiohttp.access") if config.log_level == "DEBUG" else None,
        "access_log_class": AccessLogger,
    }
    runner = web.AppRunner(create_app(config), handle_signals=True, shutdown_timeout=SHUTDOWN_TIMEOUT,
                           **handler_args)
    await runner.setup()
    try:
        limit = config.max_open_connections
        if limit is None:
            limit = default_connection_limit()
        await LimitedSite(runner, config.host, config.port, limit, handler_args, reuse_port).start()
        logging.getLogger("chat").info("Accepting %s open connections at most", limit or "any number of")
        await asyncio.Future()  # until a signal
    finally:
        await runner.cleanup()


def without_workers_flag(argv: list[str]) -> list[str]:
    """The arguments for each worker: all but `--workers N` (or `--workers=N`)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Real-time chat rooms over WebSocket.")
    parser.add_argument("--host", help="address to listen on (HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (PORT, default 8000)")
    parser.add_argument("--db", help="SQLite database file (DATABASE_PATH, default chat.db)")
    parser.add_argument("--database-url", help="postgresql://user:password@host:port/database: use PostgreSQL, "
                                               "shared by any number of processes (DATABASE_URL)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="run N server processes on one port (needs PostgreSQL: DATABASE_URL)")
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a worker of --workers
    args = parser.parse_args(argv)
    try:
        config = Config.from_env(host=args.host, port=args.port, db_path=args.db, database_url=args.database_url)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1 or (args.workers > 1 and not config.database_url):
        print("error: --workers N needs N >= 1, and more than one needs PostgreSQL (DATABASE_URL): "
              "one SQLite file serves one process", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # At DEBUG aiosqlite logs every statement with its parameters: message texts and token hashes.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
    log = logging.getLogger("chat")
    if args.workers > 1:
        return supervise(args.workers, without_workers_flag(sys.argv[1:] if argv is None else argv))
    log.info("Starting chat server (%s) on http://%s:%d/chat, database %s",
             config.environment, config.host, config.port,
             redact(config.database_url) if config.database_url else config.db_path)
    try:
        serve(config, args.reuse_port)
    except sqlite3.Error as exc:
        log.error("Cannot start: cannot use the database %s: %s", config.db_path, exc)
        return 1
    except DatabaseInUse as exc:
        # Retrying cannot help while the other server runs: exit as for a bad setting (see deploy/).
        log.error("Cannot start: %s", exc)
        return 2
    except (MigrationError, StoreUnavailable, OSError) as exc:
        log.error("Cannot start: %s", exc)
        return 1
    log.info("Stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
