"""Fixtures: a real app on a real SQLite file under tmp_path, reached through real sockets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server import create_app
from server.config import Config

MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(aiohttp_client: Any, tmp_path: Any) -> MakeClient:
    """Start an app with these settings (Config fields) on tmp_path/chat.db."""

    async def make(**settings: Any) -> TestClient:
        settings.setdefault("db_path", tmp_path / "chat.db")
        return await aiohttp_client(create_app(Config(**settings)))

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    return await make_client()
