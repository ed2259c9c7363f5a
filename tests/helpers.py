"""Steps every test repeats: create users and rooms, open sockets, read frames with a timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

TIMEOUT = 5.0


async def create_user(client: TestClient, username: str = "alice") -> dict[str, Any]:
    resp = await client.post("/users", json={"username": username})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def create_room(client: TestClient, name: str = "lobby") -> dict[str, Any]:
    resp = await client.post("/rooms", json={"name": name})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def connect(client: TestClient, room_id: str, user_id: str, **query: Any) -> Any:
    """Open a socket and check that its first frame is its own user_joined."""
    ws = await client.ws_connect(f"/ws/{room_id}/{user_id}", params=query or None)
    joined = await receive(ws)
    assert joined["type"] == "user_joined" and joined["user_id"] == user_id, joined
    return ws


def own_origin(client: TestClient) -> str:
    """The Origin a page served by this server sends: always allowed."""
    return f"http://{client.host}:{client.port}"


async def browser_socket(client: TestClient, path: str, **kwargs: Any) -> Any:
    """Open a socket as a page of this server does, with its Origin: a refusal is then a close, not HTTP."""
    return await client.ws_connect(path, origin=own_origin(client), **kwargs)


async def refused_status(client: TestClient, path: str, **kwargs: Any) -> int:
    """The HTTP status of a handshake refused before the upgrade (aiohttp's client sends no Origin)."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(path, **kwargs)
    return refused.value.status


async def receive(ws: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    return msg.json()


async def receive_close(ws: Any, timeout: float = TIMEOUT) -> tuple[int, str]:
    """The close code and reason the server sent, skipping any frames before it."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type is WSMsgType.CLOSE:
            return msg.data, msg.extra
        if msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
            return ws.close_code, ""


async def assert_error(resp: web.Response, status: int, detail: str) -> None:
    assert resp.status == status, await resp.text()
    assert await resp.json() == {"detail": detail}


async def send_and_receive(ws: Any, content: str) -> dict[str, Any]:
    """Send a chat message and wait for it to come back, skipping others' frames."""
    await ws.send_json({"content": content})
    while True:
        frame = await receive(ws)
        if frame.get("type") == "message" and frame["content"] == content.strip():
            return frame


async def metrics_once_stored(client: TestClient, messages: int) -> str:
    """The /metrics text once it counts `messages` stored. On PostgreSQL a message's echo can come
    through its commit's notification a moment before its writer hears that the commit is done."""
    for _ in range(50):
        text = await (await client.get("/metrics")).text()
        if f"chat_messages_stored_total {messages:.1f}" in text:
            break
        await asyncio.sleep(0.1)
    return text
