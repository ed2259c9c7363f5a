"""Prometheus metrics of one app, served at GET /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .hub import Hub


class Metrics:
    """The app's instruments, in a registry of its own (tests run many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages_stored = Counter("chat_messages_stored", "Chat messages committed", registry=self.registry)
        self.socket_closes = Counter(
            "chat_socket_closes", "WebSocket closes, by close code", ["code"], registry=self.registry)
        self.request_seconds = Histogram(
            "chat_http_request_duration_seconds", "HTTP request latency, by route", ["method", "route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry)

    def watch(self, hub: Hub) -> None:
        """Report the hub's own counts at scrape time."""
        self.registry.register(HubCollector(hub))


class HubCollector(Collector):
    """The hub counts in plain ints, read only when scraped: nothing is added to the per-frame path."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        yield GaugeMetricFamily("chat_open_sockets", "WebSocket connections in rooms now", value=hub.connections)
        yield GaugeMetricFamily("chat_active_rooms", "Rooms with at least one open socket", value=len(hub.rooms))
        yield CounterMetricFamily("chat_frames_delivered", "Frames written to sockets", value=hub.frames_delivered)
        yield CounterMetricFamily("chat_slow_consumer_drops", "Sockets closed because their send queue overflowed",
                                  value=hub.slow_consumer_drops)


metrics_key = web.AppKey("chat.metrics", Metrics)
