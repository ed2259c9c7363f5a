"""The chat-rooms server: create_app(config) builds the whole aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from . import frames
from .config import Config, config_key
from .db import Database, db_key
from .handlers import (
    cors_middleware, error_middleware, host_middleware, http_only, metrics_middleware, security_headers, setup_routes,
)
from .history import RecentHistory, history_key
from .hub import Hub, hub_key
from .limits import CreationLimit, creation_limit_key
from .metrics import Metrics, metrics_key
from .origins import OriginPolicy, origin_policy_key
from .postgres import PostgresStore

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


def create_app(config: Config) -> web.Application:
    app = web.Application(
        middlewares=[host_middleware,
                     *(http_only(m) for m in (metrics_middleware, cors_middleware, error_middleware))],
        client_max_size=config.max_body_bytes,
    )
    metrics = Metrics()
    app[config_key] = config
    app[metrics_key] = metrics
    app[origin_policy_key] = OriginPolicy(config)
    app[creation_limit_key] = CreationLimit(config.create_rate_per_minute)
    app[hub_key] = hub = Hub(config.send_queue_limit, config.max_connections_per_user,
                             config.max_connections_per_address, config.heartbeat_seconds)
    metrics.watch(hub)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    app.cleanup_ctx.append(database)
    # Sockets are closed (1001) before the server waits for handlers, so idle clients never hold up a stop.
    app.on_startup.append(start_heartbeat)
    app.on_shutdown.append(close_sockets)
    app.on_response_prepare.append(security_headers)
    setup_routes(app)
    return app


async def start_heartbeat(app: web.Application) -> None:
    app[hub_key].start_heartbeat()


async def open_store(config: Config) -> Database | PostgresStore:
    """PostgreSQL when DATABASE_URL is set (shared by any number of processes), else the SQLite file."""
    if config.database_url:
        return await PostgresStore.open(config.database_url, notifications=config.database_notifications)
    return await Database.open(config.db_path)


async def database(app: web.Application) -> AsyncIterator[None]:
    app[db_key] = db = await open_store(app[config_key])
    app[history_key] = history = RecentHistory(db, app[config_key].history_cache_bytes)
    hub = app[hub_key]

    def messages_committed(messages: list[frames.Stored]) -> None:
        # Right after the commit and in seq order: a message is never sent before it is stored,
        # and every socket of a room sees the room's messages in one order.
        for message in messages:
            history.committed(message)
            hub.publish(message.room_id, frames.message_frame(message.item), message.seq)
        hub.flush_all()  # now, not after the next round of socket reads: these frames are what is waited for

    db.on_messages_committed = messages_committed
    db.on_room_event = hub.publish  # join and leave notices of sockets on other processes
    yield
    await app[db_key].close()


async def close_sockets(app: web.Application) -> None:
    await app[hub_key].close_all()
