"""The HTTP routes of the contract: status codes, bodies and `detail` texts."""

from __future__ import annotations

import asyncio
import re

import pytest

from helpers import assert_error, connect, create_room, create_user, metrics_once_stored, receive, send_and_receive

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

pytestmark = pytest.mark.both_stores


async def test_index_links_health_chat_and_the_api_docs(client):
    resp = await client.get("/")
    body = await resp.json()
    assert resp.status == 200
    assert body["health"] == "/health" and body["chat"] == "/chat"
    assert body["docs"] == "/docs" and body["openapi"] == "/openapi.json"  # /docs: where the old app had it
    assert body["version"] and body["message"]


async def test_the_api_page_serves_only_swagger_uis_own_files_under_a_strict_csp(client):
    page = await client.get("/docs")
    html = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "connect-src 'self';" in csp and "unsafe" not in csp
    # Nothing from elsewhere: every script and stylesheet is this server's own.
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == [
        "/static/favicon.svg", "/docs/assets/swagger-ui.css", "/docs/assets/swagger-ui-bundle.js",
        "/static/docs.js", "/openapi.json"]
    for asset, kind in (("swagger-ui.css", "/css"), ("swagger-ui-bundle.js", "/javascript")):  # text/ or application/
        resp = await client.get(f"/docs/assets/{asset}")
        assert resp.status == 200 and resp.content_type.endswith(kind), asset
    # The package ships more (the Swagger Editor, source maps): none of it is served.
    for other in ("swagger-editor-bundle.js", "swagger-ui-bundle.js.map", "oauth2-redirect.html", "..%2Fcore.py"):
        assert (await client.get(f"/docs/assets/{other}")).status == 404, other


async def test_health_reports_services_and_stats(client):
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    await send_and_receive(ws, "hello")
    resp = await client.get("/health")
    body = await resp.json()
    assert resp.status == 200
    assert body["status"] == "healthy" and body["environment"] == "development"
    assert body["services"] == {"api": "healthy", "websocket": "healthy", "database": "healthy"}
    assert ISO_UTC.match(body["timestamp"])
    assert body["stats"] == {"active_rooms": 1, "active_users": 1, "total_messages": 1, "connections": 1,
                             "rooms": 1, "users": 1}
    await ws.close()


async def test_debug_shows_effective_flags_and_no_secret(make_client):
    client = await make_client(environment="production", require_tokens=False, allow_join_auto_users=False)
    resp = await client.get("/_debug")
    body = await resp.json()
    assert body == {"environment": "production", "auto_create_on_ws": True, "auto_user_on_ws": True,
                    "auto_create_on_join": True, "auto_user_on_join": False, "require_tokens": False,
                    "has_rooms": False, "has_users": False}
    await create_user(client)
    assert (await (await client.get("/_debug")).json())["has_users"] is True


async def test_create_user_strips_name_and_issues_token(client):
    resp = await client.post("/users", json={"username": "  bob  "})
    user = await resp.json()
    assert resp.status == 200
    assert set(user) == {"id", "username", "joined_at", "token"}
    assert user["username"] == "bob" and UUID.match(user["id"]) and ISO_UTC.match(user["joined_at"])
    assert len(user["token"]) >= 32


async def test_token_is_shown_only_at_creation(client):
    user = await create_user(client)
    listed = await (await client.get("/users")).json()
    one = await (await client.get(f"/users/{user['id']}")).json()
    assert listed == [{"id": user["id"], "username": "alice", "joined_at": user["joined_at"]}]
    assert one == listed[0]


@pytest.mark.parametrize("body, detail", [
    ({"username": " a "}, "Username must be at least 2 characters long"),
    ({"username": ""}, "Username must be at least 2 characters long"),
    ({}, "username is required"),
    ({"username": 42}, "username must be a string"),
    ({"username": "x" * 51}, "username must be at most 50 characters"),
    ({"username": "al\u0000ice"}, "username must be valid Unicode text, without NUL characters"),
])
async def test_create_user_refuses_bad_names(client, body, detail):
    await assert_error(await client.post("/users", json=body), 422, detail)
    assert await (await client.get("/users")).json() == []


@pytest.mark.parametrize("data, detail", [
    ("{not json", "The body must be valid JSON"),
    ("", "The body must be valid JSON"),
    ('["alice"]', "The body must be a JSON object"),
])
async def test_bad_json_body_is_422(client, data, detail):
    resp = await client.post("/users", data=data, headers={"Content-Type": "application/json"})
    await assert_error(resp, 422, detail)


async def test_body_over_the_limit_is_413(make_client):
    client = await make_client(max_body_bytes=1000)
    resp = await client.post("/rooms", json={"name": "x" * 2000})
    assert resp.status == 413
    assert "1000" in (await resp.json())["detail"]
    assert await (await client.get("/rooms")).json() == []


async def test_unknown_user_is_404(client):
    await assert_error(await client.get("/users/nobody"), 404, "User not found")


async def test_rooms_create_list_and_get(client):
    resp = await client.post("/rooms", json={"name": " general "})
    room = await resp.json()
    assert resp.status == 200
    assert room["name"] == "general" and room["users"] == [] and ISO_UTC.match(room["created_at"])
    other = await create_room(client, "random")
    assert [r["name"] for r in await (await client.get("/rooms")).json()] == ["general", "random"]
    assert await (await client.get(f"/rooms/{other['id']}")).json() == other


@pytest.mark.parametrize("body, detail", [
    ({"name": "   "}, "Room name must not be empty"),
    ({}, "name is required"),
    ({"name": ["x"]}, "name must be a string"),
    ({"name": "x" * 101}, "name must be at most 100 characters"),
    ({"name": "lob\u0000by"}, "name must be valid Unicode text, without NUL characters"),
])
async def test_create_room_refuses_bad_names(client, body, detail):
    await assert_error(await client.post("/rooms", json=body), 422, detail)
    assert await (await client.get("/rooms")).json() == []


async def test_unknown_room_is_404(client):
    await assert_error(await client.get("/rooms/nowhere"), 404, "Room not found")
    await assert_error(await client.get("/rooms/nowhere/messages"), 404, "Room not found")
    await assert_error(await client.get("/rooms/nowhere/presence"), 404, "Room not found")


async def test_join_adds_member_and_is_idempotent(client):
    user = await create_user(client)
    room = await create_room(client)
    for _ in range(2):
        resp = await client.post(f"/rooms/{room['id']}/join", json={"user_id": user["id"]})
        assert resp.status == 200
        assert await resp.json() == {"message": "User alice joined room lobby"}
    assert (await (await client.get(f"/rooms/{room['id']}")).json())["users"] == [user["id"]]


async def test_join_refusals_in_development(client):
    user = await create_user(client)
    room = await create_room(client)
    await assert_error(await client.post("/rooms/nowhere/join", json={"user_id": user["id"]}), 404, "Room not found")
    resp = await client.post(f"/rooms/{room['id']}/join", json={"user_id": "ghost", "username": "ghost"})
    await assert_error(resp, 404, "User not found")
    await assert_error(await client.post(f"/rooms/{room['id']}/join", json={}), 422, "user_id is required")
    await assert_error(await client.post(f"/rooms/{room['id']}/join", json={"user_id": 7}), 422,
                       "user_id must be a string")
    assert (await (await client.get(f"/rooms/{room['id']}")).json())["users"] == []
    assert len(await (await client.get("/rooms")).json()) == 1


async def test_join_auto_creates_in_production(make_client):
    client = await make_client(environment="production", require_tokens=False)
    resp = await client.post("/rooms/abcdef123456/join", json={"user_id": "u-1", "username": " carol "})
    body = await resp.json()
    assert resp.status == 200
    assert body["message"] == "User carol joined room Room abcdef12"
    assert len(body["token"]) >= 32  # the new user's token, shown to its creator only
    room = await (await client.get("/rooms/abcdef123456")).json()
    assert room["name"] == "Room abcdef12" and room["users"] == ["u-1"]
    assert (await (await client.get("/users/u-1")).json())["username"] == "carol"
    again = await (await client.post("/rooms/abcdef123456/join", json={"user_id": "u-1"})).json()
    assert again == {"message": "User carol joined room Room abcdef12"}


async def test_join_auto_user_needs_a_username(make_client):
    client = await make_client(environment="production", require_tokens=False)
    room = await create_room(client)
    resp = await client.post(f"/rooms/{room['id']}/join", json={"user_id": "u-2", "username": "x"})
    await assert_error(resp, 404, "User not found")
    await assert_error(await client.get("/users/u-2"), 404, "User not found")


async def test_join_flags_can_be_set_one_by_one(make_client):
    client = await make_client(allow_join_auto_rooms=True)
    user = await create_user(client)
    assert (await client.post("/rooms/fresh/join", json={"user_id": user["id"]})).status == 200
    resp = await client.post("/rooms/fresh/join", json={"user_id": "new", "username": "newbie"})
    await assert_error(resp, 404, "User not found")


async def test_history_is_oldest_first_with_limit(client):
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    for n in range(1, 6):
        await send_and_receive(ws, f"m{n}")
    page = await (await client.get(f"/rooms/{room['id']}/messages", params={"limit": 3})).json()
    assert [m["content"] for m in page] == ["m3", "m4", "m5"]
    assert [m["seq"] for m in page] == [3, 4, 5]
    assert set(page[0]) == {"id", "seq", "room_id", "user_id", "username", "content", "timestamp"}
    assert page[0]["username"] == "alice" and page[0]["room_id"] == room["id"]
    default = await (await client.get(f"/rooms/{room['id']}/messages")).json()
    assert [m["seq"] for m in default] == [1, 2, 3, 4, 5]
    await ws.close()


async def test_history_pages_with_before_and_after(client):
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    for n in range(1, 8):
        await send_and_receive(ws, f"m{n}")
    url = f"/rooms/{room['id']}/messages"
    before = await (await client.get(url, params={"before": 5, "limit": 2})).json()
    after = await (await client.get(url, params={"after": 2, "limit": 3})).json()
    assert [m["seq"] for m in before] == [3, 4]
    assert [m["seq"] for m in after] == [3, 4, 5]
    assert await (await client.get(url, params={"after": 7})).json() == []
    await ws.close()


async def test_latest_page_agrees_with_the_database_while_messages_arrive(make_client):
    # The latest page is served from memory; messages committed while it loads must not be lost.
    client = await make_client(rate_limit_per_second=0)
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    url = f"/rooms/{room['id']}/messages"
    for n in range(60):
        await ws.send_json({"content": f"m{n}"})
    pages = await asyncio.gather(*(client.get(url, params={"limit": 100}) for _ in range(5)))
    for n in range(60):
        assert (await receive(ws))["seq"] == n + 1
    for n in range(60, 130):
        await send_and_receive(ws, f"m{n}")
    assert all(page.status == 200 for page in pages)
    from_memory = await (await client.get(url, params={"limit": 100})).json()
    from_sqlite = await (await client.get(url, params={"limit": 101})).json()
    assert [m["seq"] for m in from_memory] == list(range(31, 131))
    assert from_memory == from_sqlite[1:]
    assert await (await client.get(url, params={"limit": 3})).json() == from_sqlite[-3:]
    await ws.close()


@pytest.mark.parametrize("query, detail", [
    ({"limit": "0"}, "limit must be a whole number, from 1 to 1000"),
    ({"limit": "abc"}, "limit must be a whole number, from 1 to 1000"),
    ({"limit": "1001"}, "limit must be a whole number, from 1 to 1000"),
    ({"before": "-1"}, "before must be a whole number, 0 or more"),
    ({"before": "3", "after": "1"}, "Give before or after, not both"),
])
async def test_history_refuses_bad_paging(client, query, detail):
    room = await create_room(client)
    await assert_error(await client.get(f"/rooms/{room['id']}/messages", params=query), 422, detail)


async def test_presence_lists_connected_users(client):
    alice, bob = await create_user(client, "alice"), await create_user(client, "bob")
    room = await create_room(client)
    url = f"/rooms/{room['id']}/presence"
    assert await (await client.get(url)).json() == []
    sockets = [await connect(client, room["id"], alice["id"]), await connect(client, room["id"], alice["id"]),
               await connect(client, room["id"], bob["id"])]
    assert await (await client.get(url)).json() == [
        {"user_id": alice["id"], "username": "alice", "connections": 2},
        {"user_id": bob["id"], "username": "bob", "connections": 1},
    ]
    for ws in sockets:
        await ws.close()


async def test_unknown_route_and_method_answer_json(client):
    await assert_error(await client.get("/nope"), 404, "Not Found")
    await assert_error(await client.delete("/users"), 405, "Method Not Allowed")


async def test_metrics_are_prometheus_text(client):
    user = await create_user(client)
    room = await create_room(client)
    ws = await connect(client, room["id"], user["id"])
    await send_and_receive(ws, "counted")
    text = await metrics_once_stored(client, 1)
    assert "chat_open_sockets 1.0" in text
    assert "chat_active_rooms 1.0" in text
    assert "chat_messages_stored_total 1.0" in text
    assert "chat_frames_delivered_total 2.0" in text  # user_joined and the message, to one socket
    assert 'chat_http_request_duration_seconds_count{method="POST",route="/users"} 1.0' in text
    await ws.close()
