"""Start the chat server: python run.py [--host H] [--port P] [--db PATH | --database-url URL] [--workers N]."""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from server import create_app
from server.config import Config, ConfigError, redact
from server.db import DatabaseInUse, MigrationError, StoreUnavailable
from server.workers import supervise

# Seconds a stop (SIGINT or SIGTERM) waits for requests still running after sockets got 1001.
SHUTDOWN_TIMEOUT = 5.0


class AccessLogger(AbstractAccessLogger):
    """One line per request, without the query string: a socket's `?token=` must not reach the logs."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug('%s "%s %s" %d %.1fms', request.remote, request.method, request.path,
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
        web.run_app(
            create_app(config), host=config.host, port=config.port,
            shutdown_timeout=SHUTDOWN_TIMEOUT, print=None, reuse_port=args.reuse_port,
            # Per-request lines only at DEBUG: the proxy in front logs requests, and they cost CPU.
            access_log=logging.getLogger("aiohttp.access") if config.log_level == "DEBUG" else None,
            access_log_class=AccessLogger,
        )
    except sqlite3.Error as exc:
        log.error("Cannot start: cannot use the database %s: %s", config.db_path, exc)
        return 1
    except (DatabaseInUse, MigrationError, StoreUnavailable, OSError) as exc:
        log.error("Cannot start: %s", exc)
        return 1
    log.info("Stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
