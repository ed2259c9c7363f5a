"""A full disk, for real: the database lives on a small tmpfs that a test fills up (needs root to mount)."""

from __future__ import annotations

import asyncio
import errno
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import db as db_module

from helpers import assert_error, connect, create_room, create_user, receive, send_and_receive

DISK_FULL = "The server's disk is full; try again later"


class SmallDisk:
    """A 4 MiB tmpfs and a file that takes all of its free space when asked to."""

    def __init__(self, mount_point: Path) -> None:
        self.path = mount_point
        self.filler = mount_point / "filler"

    def fill(self) -> None:
        chunk = b"\0" * 4096
        with open(self.filler, "ab", buffering=0) as file:
            try:
                while True:
                    file.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        # Whatever is left is smaller than a page: take it too.
        with open(self.filler, "ab", buffering=0) as file:
            for size in (2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1):
                try:
                    file.write(b"\0" * size)
                except OSError:
                    pass

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield SmallDisk(mount_point)
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


async def test_a_full_disk_answers_503_and_health_says_so_until_space_returns(make_client, small_disk, monkeypatch):
    # No checkpoint in between: one would move pages out of the -wal and so change what is free.
    monkeypatch.setattr(db_module, "CHECKPOINT_WHEN_QUIET_SECONDS", 60.0)
    monkeypatch.setattr(db_module, "WRITE_PROBE_SECONDS", 0.2, raising=False)
    client = await make_client(db_path=small_disk.path / "chat.db")
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    assert (await client.get("/health")).status == 200

    small_disk.fill()
    await assert_error(await client.post("/users", json={"username": "bob"}), 503, DISK_FULL)
    await assert_error(await client.post("/rooms", json={"name": "kitchen"}), 503, DISK_FULL)
    await ws.send_json({"content": "x" * 4000})
    assert await receive(ws) == {"type": "error", "message": "The message could not be stored; please send it again"}
    resp = await client.get("/health")
    assert resp.status == 503
    health = await resp.json()
    assert (health["status"], health["services"]["database"]) == ("unhealthy", "unhealthy")
    assert health["detail"] == f"Writes fail: {DISK_FULL}"
    assert health["stats"]["users"] == 1  # reads go on

    small_disk.free()  # and no client writes anything: the server finds out by itself
    deadline = time.monotonic() + 5
    while (resp := await client.get("/health")).status != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert resp.status == 200, await resp.text()
    assert "detail" not in await resp.json()
    assert (await send_and_receive(ws, "space again"))["seq"] == 1
    assert [u["username"] for u in await (await client.get("/users")).json()] == ["alice"]
