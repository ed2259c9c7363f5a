"""Prometheus metrics of one app, served at GET /metrics."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The app's instruments, in a registry of its own (tests run many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.open_sockets = Gauge("chat_open_sockets", "WebSocket connections in rooms now", registry=self.registry)
        self.active_rooms = Gauge("chat_active_rooms", "Rooms with at least one open socket", registry=self.registry)
        self.messages_stored = Counter("chat_messages_stored", "Chat messages committed", registry=self.registry)
        self.frames_delivered = Counter(
            "chat_frames_delivered", "Frames written to sockets", registry=self.registry)
        self.socket_closes = Counter(
            "chat_socket_closes", "WebSocket closes, by close code", ["code"], registry=self.registry)
        self.slow_consumer_drops = Counter(
            "chat_slow_consumer_drops", "Sockets closed because their send queue overflowed", registry=self.registry)
        self.request_seconds = Histogram(
            "chat_http_request_duration_seconds", "HTTP request latency, by route", ["method", "route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry)

    def watch(self, sockets: Callable[[], int], rooms: Callable[[], int]) -> None:
        """Read the socket gauges from their owner at scrape time."""
        self.open_sockets.set_function(sockets)
        self.active_rooms.set_function(rooms)


metrics_key = web.AppKey("chat.metrics", Metrics)
