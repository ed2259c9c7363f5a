"""Setting up users, rooms and history over the public API before a measurement."""

import asyncio
import json

import aiohttp

from bench import wsclient


async def _create(session: aiohttp.ClientSession, path: str, body: dict) -> str:
    async with session.post(path, json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"POST {path} answered {resp.status}: {await resp.text()}")
        return (await resp.json())["id"]


async def _create_many(base_url: str, path: str, field: str, names: list[str], concurrency: int) -> list[str]:
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(base_url) as session:
        async def one(name: str) -> str:
            async with gate:
                return await _create(session, path, {field: name})
        return await asyncio.gather(*(one(name) for name in names))


def create_users(base_url: str, count: int, prefix: str = "bench", concurrency: int = 16) -> list[str]:
    names = [f"{prefix}-user-{i}" for i in range(count)]
    return asyncio.run(_create_many(base_url, "/users", "username", names, concurrency))


def create_rooms(base_url: str, count: int, prefix: str = "bench", concurrency: int = 16) -> list[str]:
    names = [f"{prefix}-room-{i}" for i in range(count)]
    return asyncio.run(_create_many(base_url, "/rooms", "name", names, concurrency))


async def _send_history(port: int, room_id: str, user_id: str, count: int) -> None:
    done = asyncio.get_running_loop().create_future()
    seen = 0

    def on_text(payload: bytes) -> None:
        nonlocal seen
        if json.loads(payload).get("type") == "message":
            seen += 1
            if seen == count and not done.done():
                done.set_result(None)

    client = await wsclient.connect("127.0.0.1", port, f"/ws/{room_id}/{user_id}", on_text)
    try:
        for i in range(count):
            client.send_text(json.dumps({"content": f"history message {i}"}))
            if i % 20 == 19:
                await asyncio.sleep(0.01)  # stay well inside any send queue limit
        await asyncio.wait_for(done, 60)
    finally:
        client.close()


def send_history(port: int, room_id: str, user_id: str, count: int) -> None:
    """Post `count` messages to a room through a socket and wait until they come back."""
    asyncio.run(_send_history(port, room_id, user_id, count))
