"""Several server processes on one PostgreSQL: every room shared, with the guarantees of one process.

Real `run.py` processes, a real PostgreSQL, real sockets. Clients spread over
the processes; writers on every process. Each socket must receive every
message of its room exactly once, in seq order, with seqs 1, 2, 3, ... and no
gap, through a process killed with SIGKILL, a listener connection terminated,
PostgreSQL restarted, and notifications turned off.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from helpers import TIMEOUT
from server.postgres import HEARTBEAT_SECONDS, PROCESS_TIMEOUT_SECONDS
from server_process import ServerProcess

PROCESSES = 3
ROOMS = 3
READERS_PER_ROOM = 8          # plus the writers: 30 sockets in all
WRITERS_PER_ROOM = 2
MESSAGES_PER_WRITER = 30
SETTLE_SECONDS = 15.0         # how long readers may take to catch up once the writers are done


@pytest.fixture
def cluster(postgres, tmp_path):
    """Start PROCESSES servers on one new database; extra environment per call."""
    url = postgres.new_database()
    servers: list[ServerProcess] = []

    def start(**env: str) -> list[ServerProcess]:
        for n in range(PROCESSES):
            servers.append(ServerProcess(tmp_path / "unused.db", tmp_path / f"server{n}.log",
                                         {"DATABASE_URL": url, "RATE_LIMIT_PER_SECOND": "0", **env}).start())
        return servers

    start.url = url  # type: ignore[attr-defined]
    yield start
    for server in servers:
        server.kill()


class Member:
    """One socket's view of a room: the seqs it received, reconnecting with since= to any live process."""

    def __init__(self, session: aiohttp.ClientSession, servers: list[ServerProcess], home: int,
                 room_id: str, user_id: str) -> None:
        self.session = session
        self.servers = servers
        self.home = home
        self.room_id = room_id
        self.user_id = user_id
        self.seqs: list[int] = []
        self.contents: set[str] = set()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.joined = asyncio.Event()
        self.reconnects = 0
        self.arrived = asyncio.Event()  # set at every message

    async def run(self) -> None:
        for attempt in itertools.count():
            server = self.servers[(self.home + attempt) % len(self.servers)]
            if server.process is None:
                continue  # killed
            query = f"?since={self.seqs[-1] if self.seqs else 0}"
            try:
                async with self.session.ws_connect(f"{server.ws_url}/ws/{self.room_id}/{self.user_id}{query}",
                                                   heartbeat=None) as ws:
                    self.ws = ws
                    async for msg in ws:
                        frame = json.loads(msg.data)
                        if frame["type"] == "user_joined" and frame["user_id"] == self.user_id:
                            self.joined.set()
                        elif frame["type"] == "message":
                            self.seqs.append(frame["seq"])
                            self.contents.add(frame["content"])
                            self.arrived.set()
            except (aiohttp.ClientError, OSError):
                pass
            self.ws = None
            self.reconnects += 1
            await asyncio.sleep(0.2)

    async def send(self, content: str) -> bool:
        """Send, and wait until the message comes back (on this socket or a replay): acknowledged."""
        ws = self.ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_json({"content": content})
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            return False
        return await self.until(lambda: content in self.contents, 3.0)

    async def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Whether the condition on what arrived came true within `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                return False
            self.arrived.clear()
            try:
                async with asyncio.timeout(0.2):
                    await self.arrived.wait()
            except TimeoutError:
                pass
        return True


async def chat(servers: list[ServerProcess], during: Callable[[int], Awaitable[None]] | None = None,
               ) -> Run:
    """Rooms with members on every process; writers write; `during(n)` runs after the writers' n-th round."""
    async with aiohttp.ClientSession() as session:
        api = servers[0].url
        rooms = []
        for r in range(ROOMS):
            async with session.post(f"{api}/rooms", json={"name": f"room {r}"}) as resp:
                rooms.append((await resp.json())["id"])
        members: list[Member] = []
        for r, room_id in enumerate(rooms):
            for m in range(READERS_PER_ROOM + WRITERS_PER_ROOM):
                async with session.post(f"{api}/users", json={"username": f"user {r}.{m}"}) as resp:
                    user_id = (await resp.json())["id"]
                members.append(Member(session, servers, (r + m) % len(servers), room_id, user_id))
        tasks = [asyncio.create_task(member.run()) for member in members]
        try:
            async with asyncio.timeout(TIMEOUT * 2):
                await asyncio.gather(*(member.joined.wait() for member in members))
            writers = [m for m in members if members.index(m) % (READERS_PER_ROOM + WRITERS_PER_ROOM)
                       >= READERS_PER_ROOM]
            acknowledged: dict[str, list[str]] = {room_id: [] for room_id in rooms}

            async def write(writer: Member, number: int) -> None:
                for attempt in itertools.count():
                    content = f"{writer.user_id} #{number} try {attempt}"
                    if await writer.send(content):
                        acknowledged[writer.room_id].append(content)
                        return
                    await asyncio.sleep(0.2)  # reconnecting

            for number in range(MESSAGES_PER_WRITER):
                async with asyncio.timeout(30):
                    await asyncio.gather(*(write(writer, number) for writer in writers))
                if during is not None:
                    await during(number)
            for member in members:
                total = len(acknowledged[member.room_id])
                # Every member ends with seqs 1..N of its room: at least the acknowledged ones.
                await member.until(lambda m=member, t=total: len(m.seqs) >= t and m.seqs[-1] == len(m.seqs),
                                   SETTLE_SECONDS)
            await asyncio.sleep(0.5)  # anything doubled would arrive now
            live = next(server for server in servers if server.process is not None)
            async with session.get(f"{live.url}/health") as resp:
                health = await resp.json()
            async with session.get(f"{live.url}/rooms/{rooms[0]}/presence") as resp:
                presence = await resp.json()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return Run(members, acknowledged, health, presence)


class Run:
    """What a chat() saw: members, acknowledged contents per room, and /health and one room's presence at the end."""

    def __init__(self, members: list[Member], acknowledged: dict[str, list[str]], health: dict[str, Any],
                 presence: list[dict[str, Any]]) -> None:
        self.members = members
        self.acknowledged = acknowledged
        self.health = health
        self.presence = presence


def assert_every_socket_got_its_room_once_in_order(postgres, url: str, run: Run) -> None:
    members = run.members
    for room_id, contents in run.acknowledged.items():
        stored = postgres.sql(url, f"SELECT count(*), count(DISTINCT content), coalesce(max(seq), 0) "
                                   f"FROM messages WHERE room_id = '{room_id}'")
        count, distinct, last = map(int, stored.split("|"))
        assert count == distinct == last, stored  # no seq gap, nothing stored twice
        assert len(contents) == WRITERS_PER_ROOM * MESSAGES_PER_WRITER
        for member in (m for m in members if m.room_id == room_id):
            assert member.seqs == list(range(1, last + 1)), (member.seqs, member.reconnects)
            assert set(contents) <= member.contents


async def test_every_socket_on_every_process_gets_each_message_once_in_seq_order(cluster, postgres):
    servers = cluster()
    run = await chat(servers)
    assert_every_socket_got_its_room_once_in_order(postgres, cluster.url, run)
    # Every process counts the others' sockets too.
    assert run.health["store"] == "postgresql"
    assert run.health["stats"]["connections"] == len(run.members), run.health
    assert len(run.presence) == READERS_PER_ROOM + WRITERS_PER_ROOM


async def test_a_process_killed_mid_run_loses_nothing(cluster, postgres):
    servers = cluster()

    async def kill_one(number: int) -> None:
        if number == MESSAGES_PER_WRITER // 3:
            servers[2].kill()

    run = await chat(servers, kill_one)
    assert_every_socket_got_its_room_once_in_order(postgres, cluster.url, run)
    assert sum(member.reconnects for member in run.members) >= len(run.members) // PROCESSES


async def test_terminated_listeners_delay_nothing_for_long(cluster, postgres):
    servers = cluster()

    async def terminate_listeners(number: int) -> None:
        if number % 10 == 5:
            postgres.sql(cluster.url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE query LIKE 'LISTEN%' AND datname = current_database()")

    run = await chat(servers, terminate_listeners)
    assert_every_socket_got_its_room_once_in_order(postgres, cluster.url, run)


async def test_postgresql_restarted_mid_run(cluster, postgres):
    servers = cluster()

    async def restart(number: int) -> None:
        if number == MESSAGES_PER_WRITER // 2:
            await asyncio.to_thread(postgres.restart)

    run = await chat(servers, restart)
    assert_every_socket_got_its_room_once_in_order(postgres, cluster.url, run)


async def test_without_notifications_the_poll_delivers_everything(cluster, postgres):
    servers = cluster(DATABASE_NOTIFICATIONS="false")
    run = await chat(servers)
    assert_every_socket_got_its_room_once_in_order(postgres, cluster.url, run)


async def room_with(session: aiohttp.ClientSession, api: str, *usernames: str) -> tuple[str, list[str]]:
    """A new room and new users with these names: their ids."""
    async with session.post(f"{api}/rooms", json={"name": "lobby"}) as resp:
        room_id = (await resp.json())["id"]
    users = []
    for name in usernames:
        async with session.post(f"{api}/users", json={"username": name}) as resp:
            users.append((await resp.json())["id"])
    return room_id, users


async def test_a_dead_process_leaves_presence_within_the_timeout(cluster):
    first, second, _ = cluster()
    async with aiohttp.ClientSession() as session:
        room_id, (bob,) = await room_with(session, first.url, "bob")
        async with session.ws_connect(f"{second.ws_url}/ws/{room_id}/{bob}") as ws:
            await ws.receive_json(timeout=TIMEOUT)  # bob's own user_joined: he is in
            for _ in range(50):  # seen from the other process once his process has written it (at once)
                present = [entry["user_id"] for entry in first.get_json(f"/rooms/{room_id}/presence")]
                if present:
                    break
                await asyncio.sleep(0.1)
            assert present == [bob]
            second.kill()
            started = asyncio.get_running_loop().time()
            while first.get_json(f"/rooms/{room_id}/presence"):
                assert asyncio.get_running_loop().time() - started < PROCESS_TIMEOUT_SECONDS + HEARTBEAT_SECONDS
                await asyncio.sleep(0.5)
            assert first.get_json("/health")["stats"]["connections"] == 0


async def test_a_process_stopping_tells_the_others_its_sockets_left(cluster):
    first, second, _ = cluster()
    async with aiohttp.ClientSession() as session:
        room_id, users = await room_with(session, first.url, "alice", "bob")
        async with session.ws_connect(f"{first.ws_url}/ws/{room_id}/{users[0]}") as alice, \
                session.ws_connect(f"{second.ws_url}/ws/{room_id}/{users[1]}") as bob:
            await bob.receive_json(timeout=TIMEOUT)
            frames = [await alice.receive_json(timeout=TIMEOUT) for _ in range(2)]
            assert frames[1] == {**frames[1], "type": "user_joined", "user_id": users[1]}  # from the other process
            second.stop()  # SIGTERM: bob's socket is closed with 1001
            left = await alice.receive_json(timeout=TIMEOUT)
            assert left == {**left, "type": "user_left", "user_id": users[1]}


async def test_a_message_reaches_another_process_exactly_as_it_was_stored(cluster):
    # Notices carry messages as JSON lines that the database takes apart and the other processes number.
    first, second, _ = cluster()
    content = 'quotes " \\" "seq":0, back\\slash\nnew line\ttab \x01\x1f é 😀 \u2028 {"id":"x"}'
    async with aiohttp.ClientSession() as session:
        room_id, users = await room_with(session, first.url, "alice", "bob")
        async with session.ws_connect(f"{first.ws_url}/ws/{room_id}/{users[0]}") as alice, \
                session.ws_connect(f"{second.ws_url}/ws/{room_id}/{users[1]}") as bob:
            await bob.receive_json(timeout=TIMEOUT)
            await alice.send_json({"content": content})
            sent = await next_message(alice)
            assert sent["content"] == content and sent["seq"] == 1
            assert await next_message(bob) == sent
            for server in (first, second):
                history = await (await session.get(f"{server.url}/rooms/{room_id}/messages")).json()
                assert history == [{key: value for key, value in sent.items() if key != "type"}]


async def next_message(ws: aiohttp.ClientWebSocketResponse) -> dict:
    while (frame := await ws.receive_json(timeout=TIMEOUT))["type"] != "message":
        pass
    return frame


async def test_messages_too_big_for_a_notification_still_reach_every_process(cluster):
    first, second, _ = cluster()
    big = "é" * 4000  # 8 KB of UTF-8, 16 KB escaped: more than a NOTIFY may carry
    async with aiohttp.ClientSession() as session:
        room_id, users = await room_with(session, first.url, "alice", "bob")
        async with session.ws_connect(f"{first.ws_url}/ws/{room_id}/{users[0]}") as alice, \
                session.ws_connect(f"{second.ws_url}/ws/{room_id}/{users[1]}") as bob:
            await bob.receive_json(timeout=TIMEOUT)
            for content in ("small", big, "small again"):
                await alice.send_json({"content": content})
            received = []
            while len(received) < 3:
                frame = await bob.receive_json(timeout=TIMEOUT)
                if frame["type"] == "message":
                    received.append((frame["seq"], frame["content"]))
            assert received == [(1, "small"), (2, big), (3, "small again")]
