"""What one client can make the server create, and how big a list it can make the server send."""

from __future__ import annotations

import asyncio

import pytest

from aiohttp import WSMsgType

from helpers import TIMEOUT, assert_error, connect, create_room, create_user
from server.db import db_key
from server.limits import CREATE_BURST

# Pages and limits are the store's business too: both stores must page alike.
pytestmark = pytest.mark.both_stores

OVER_LIMIT = "Too many users and rooms created from your address; try again in {} s"


async def use_up_creations(client, headers=None, count: int = CREATE_BURST) -> None:
    """Spend the burst (what is left of it): half users, half rooms."""
    for n in range(count):
        path, body = ("/users", {"username": f"user {n}"}) if n % 2 else ("/rooms", {"name": f"room {n}"})
        resp = await client.post(path, json=body, headers=headers)
        assert resp.status == 200, await resp.text()


async def assert_over_limit(resp, retry_after: int = 60) -> None:
    # At 1 a minute, one creation comes back every 60 s (less the time the test took so far): a test
    # slowed down by a busy machine still finds the burst used up.
    seconds = int(resp.headers["Retry-After"])
    assert 1 <= seconds <= retry_after
    await assert_error(resp, 429, OVER_LIMIT.format(seconds))


async def test_users_and_rooms_one_address_creates_are_limited(make_client):
    client = await make_client(create_rate_per_minute=1)
    await use_up_creations(client)
    await assert_over_limit(await client.post("/users", json={"username": "one too many"}))
    await assert_over_limit(await client.post("/rooms", json={"name": "one too many"}))
    assert len(await (await client.get("/users")).json()) == CREATE_BURST // 2
    assert len(await (await client.get("/rooms")).json()) == CREATE_BURST // 2


async def test_auto_creation_through_join_counts_and_writes_nothing_when_over(make_client):
    client = await make_client(create_rate_per_minute=1, allow_join_auto_rooms=True, allow_join_auto_users=True)
    existing_user, existing_room = await create_user(client, "alice"), await create_room(client)
    await use_up_creations(client, count=CREATE_BURST - 2)
    resp = await client.post("/rooms/new-room/join", json={"user_id": "new-user", "username": "newcomer"})
    await assert_over_limit(resp, retry_after=120)  # a room and a user: two creations
    await assert_error(await client.get("/rooms/new-room"), 404, "Room not found")
    await assert_error(await client.get("/users/new-user"), 404, "User not found")
    # Joining what exists creates nothing and is not limited.
    resp = await client.post(f"/rooms/{existing_room['id']}/join", json={"user_id": existing_user["id"]})
    assert resp.status == 200, await resp.text()


async def test_a_socket_over_the_creation_limit_is_closed_with_1008_and_creates_nothing(make_client):
    client = await make_client(create_rate_per_minute=1, allow_websocket_auto_rooms=True,
                               allow_websocket_auto_users=True)
    await use_up_creations(client)
    # A browser's socket (it has an Origin): accepted, then closed with a code and reason it can read.
    ws = await client.ws_connect("/ws/new-room/new-user", params={"username": "newcomer"},
                                 headers={"Origin": str(client.make_url(""))})
    msg = await ws.receive(timeout=TIMEOUT)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1008)
    assert msg.extra in [OVER_LIMIT.format(seconds) for seconds in range(1, 121)], msg.extra
    await assert_error(await client.get("/rooms/new-room"), 404, "Room not found")
    await assert_error(await client.get("/users/new-user"), 404, "User not found")


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limits(make_client):
    client = await make_client(create_rate_per_minute=1, trusted_proxies=("127.0.0.0/8",),
                               max_connections_per_address=1)
    await use_up_creations(client, {"X-Forwarded-For": "203.0.113.5"})
    await assert_over_limit(await client.post("/users", json={"username": "mallory"},
                                              headers={"X-Forwarded-For": "203.0.113.5"}))
    # Naming another client to the left of the proxy's entry does not help: the proxy appended the real one.
    spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.5"}
    await assert_over_limit(await client.post("/users", json={"username": "mallory"}, headers=spoofed))
    alice = await create_user_from(client, "198.51.100.7")
    room = await create_room_from(client, "198.51.100.7")
    # MAX_CONNECTIONS_PER_ADDRESS counts the same addresses.
    first = await client.ws_connect(f"/ws/{room['id']}/{alice['id']}", headers={"X-Forwarded-For": "198.51.100.7"})
    assert (await first.receive(timeout=TIMEOUT)).json()["type"] == "user_joined"
    second = await client.ws_connect(f"/ws/{room['id']}/{alice['id']}",
                                     headers={"X-Forwarded-For": "198.51.100.7", "Origin": str(client.make_url(""))})
    assert (await second.receive(timeout=TIMEOUT)).data == 1008
    other = await client.ws_connect(f"/ws/{room['id']}/{alice['id']}", headers={"X-Forwarded-For": "198.51.100.8"})
    assert (await other.receive(timeout=TIMEOUT)).json()["type"] == "user_joined"
    await asyncio.gather(first.close(), second.close(), other.close())


async def test_without_trusted_proxies_x_forwarded_for_is_ignored(make_client):
    client = await make_client(create_rate_per_minute=1)
    await use_up_creations(client, {"X-Forwarded-For": "203.0.113.5"})
    await assert_over_limit(await client.post("/users", json={"username": "mallory"},
                                              headers={"X-Forwarded-For": "203.0.113.6"}))


async def create_user_from(client, address: str) -> dict:
    resp = await client.post("/users", json={"username": "alice"}, headers={"X-Forwarded-For": address})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def create_room_from(client, address: str) -> dict:
    resp = await client.post("/rooms", json={"name": "lobby"}, headers={"X-Forwarded-For": address})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_the_limit_can_be_turned_off(make_client):
    client = await make_client(create_rate_per_minute=0)
    await use_up_creations(client)  # every one answered 200
    assert (await create_user(client))["username"] == "alice"  # and one more still is


# -- pages -----------------------------------------------------------------------------------


async def read_pages(client, path: str) -> list[list[dict]]:
    """Follow the Link headers from `path` to the last page."""
    pages = []
    while path:
        resp = await client.get(path)
        assert resp.status == 200, await resp.text()
        pages.append(await resp.json())
        path = resp.links.get("next", {}).get("url")
        if path:
            path = path.relative() if path.is_absolute() else path
    return pages


async def test_users_and_rooms_are_listed_in_pages_that_link_to_the_next(client):
    # Created in a burst: many share a millisecond, so the order within one must hold across pages too.
    users = await asyncio.gather(*(create_user(client, f"user {n}") for n in range(7)))
    rooms = await asyncio.gather(*(create_room(client, f"room {n}") for n in range(7)))
    for room in rooms[:2]:
        resp = await client.post(f"/rooms/{room['id']}/join", json={"user_id": users[0]["id"]})
        assert resp.status == 200
    for path, created in (("/users", users), ("/rooms", rooms)):
        everything = await (await client.get(path)).json()
        pages = await read_pages(client, f"{path}?limit=3")
        assert [len(page) for page in pages] == [3, 3, 1]
        assert [item for page in pages for item in page] == everything
        assert sorted(item["id"] for item in everything) == sorted(item["id"] for item in created)
    assert (await read_pages(client, "/rooms?limit=3"))[0][0]["users"] in ([users[0]["id"]], [])


async def test_a_page_that_ends_the_list_has_no_next_link(client):
    await create_user(client)
    resp = await client.get("/users?limit=1")
    assert len(await resp.json()) == 1 and "Link" not in resp.headers


async def test_old_clients_get_the_first_thousand_without_asking(make_client):
    client = await make_client(create_rate_per_minute=0)
    db = client.app[db_key]
    for batch in range(0, 1001, 100):  # in batches: a PostgreSQL store has a pool of connections, not 1001
        await asyncio.gather(*(db.create_user(f"user {n}") for n in range(batch, min(batch + 100, 1001))))
    resp = await client.get("/users")
    first = await resp.json()
    assert len(first) == 1000
    rest = await (await client.get(resp.links["next"]["url"].relative())).json()
    assert len(rest) == 1 and rest[0]["id"] not in {user["id"] for user in first}


async def test_bad_page_parameters_are_refused(client):
    await assert_error(await client.get("/rooms?limit=0"), 422, "limit must be a whole number, from 1 to 1000")
    await assert_error(await client.get("/users?limit=1001"), 422, "limit must be a whole number, from 1 to 1000")
    for cursor in ("%25%25", "", "A", "%C3%97"):  # not base64url; nothing; not whole bytes; not ASCII
        await assert_error(await client.get(f"/users?after={cursor}"), 422,
                           "after must be the cursor from the Link header of the previous page")
