"""/openapi.json is true: it lists exactly the app's routes, real answers match it, and schemathesis agrees."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

schemathesis = pytest.importorskip("schemathesis")
import requests  # noqa: E402  (comes with schemathesis)

# The socket is in API.md; static files are the pages' (/docs/assets: Swagger UI's own two files).
UNDOCUMENTED = ("/ws/{room_id}/{user_id}", "/static", "/docs/assets")
ORIGIN = "https://chat.example"
BODY_LIMIT = 2000

# Where the server is right and schemathesis cannot know it, per operation:
# - before= and after= together are refused (422), which OpenAPI 3.0 parameters cannot express;
# - a join answers 404 "User not found" for a user id it was never given, in a room that exists.
SCHEMATHESIS_SEED = 20261201
SCHEMATHESIS_CONFIG = """
[[operations]]
include-path = "/rooms/{room_id}/messages"
checks.positive_data_acceptance.enabled = false

[[operations]]
include-path = "/rooms/{room_id}/join"
checks.ensure_resource_availability.enabled = false
"""


def strict(schema: Any) -> Any:
    """The document with every object closed: a field the server sends must be documented too."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


async def test_every_route_is_documented_and_every_documented_route_exists(client):
    served = set()
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD" and not path.startswith(UNDOCUMENTED):
            served.add((route.method.lower(), path))
    document = await (await client.get("/openapi.json")).json()
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert documented == served
    for path, operations in document["paths"].items():  # each {placeholder} is a documented parameter
        for operation in operations.values():
            in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert in_path == {part[1:-1] for part in path.split("/") if part.startswith("{")}, path


class Checker:
    """Calls the live server and checks each answer against the (strict) document."""

    def __init__(self, url: str, document: dict[str, Any]) -> None:
        self.url = url
        self.document = document
        self.schema = schemathesis.openapi.from_dict(strict(document))
        self.checked: set[tuple[str, str, int]] = set()

    async def call(self, method: str, template: str, status: int, path: str | None = None,
                   **kwargs: Any) -> requests.Response:
        response = await asyncio.to_thread(requests.request, method, self.url + (path or template),
                                           timeout=10, **kwargs)
        assert response.status_code == status, (method, path or template, response.text)
        documented = self.document["paths"][template][method.lower()]["responses"]
        assert str(status) in documented, f"{method} {template} answers {status}, which is not documented"
        media_type = response.headers["Content-Type"].split(";")[0]
        assert media_type in documented[str(status)]["content"], (method, template, media_type)
        self.schema[template][method.upper()].validate_response(response)
        self.checked.add((method.lower(), template, status))
        return response


async def test_real_answers_match_the_document(start_server):
    server = start_server(REQUIRE_TOKENS="true", CORS_ORIGINS=ORIGIN, MAX_BODY_BYTES=str(BODY_LIMIT))
    document = server.get_json("/openapi.json")
    api = Checker(server.url, document)
    for path in ("/", "/health", "/_debug", "/openapi.json", "/metrics", "/chat", "/docs", "/users", "/rooms"):
        await api.call("GET", path, 200)

    user = (await api.call("POST", "/users", 200, json={"username": "alice"})).json()
    await api.call("POST", "/users", 422, json={"username": "a"})
    await api.call("POST", "/users", 413, data="x" * (BODY_LIMIT + 1))
    await api.call("POST", "/users", 403, json={"username": "mallory"}, headers={"Origin": "https://evil.example"})
    await api.call("GET", "/users/{user_id}", 200, f"/users/{user['id']}")
    await api.call("GET", "/users/{user_id}", 404, "/users/nobody")

    room = (await api.call("POST", "/rooms", 200, json={"name": "lobby"}, headers={"Origin": ORIGIN})).json()
    await api.call("POST", "/rooms", 422, json={"name": " "})
    await api.call("POST", "/rooms", 413, data="x" * (BODY_LIMIT + 1))
    await api.call("POST", "/rooms", 403, json={"name": "spam"}, headers={"Origin": "https://evil.example"})
    join, rid = "/rooms/{room_id}/join", room["id"]
    await api.call("POST", join, 413, f"/rooms/{rid}/join", data="x" * (BODY_LIMIT + 1))
    await api.call("POST", join, 403, f"/rooms/{rid}/join", json={"user_id": user["id"]},
                   headers={"Origin": "https://evil.example"})
    await api.call("POST", join, 401, f"/rooms/{rid}/join", json={"user_id": user["id"]})
    await api.call("POST", join, 200, f"/rooms/{rid}/join", json={"user_id": user["id"], "token": user["token"]})
    await api.call("POST", join, 404, "/rooms/nowhere/join", json={"user_id": user["id"]})
    await api.call("POST", join, 422, f"/rooms/{rid}/join", json={"user_id": 7})
    await api.call("GET", "/rooms/{room_id}", 200, f"/rooms/{rid}")
    await api.call("GET", "/rooms/{room_id}", 404, "/rooms/nowhere")
    await api.call("GET", "/rooms", 200)  # now with a member
    await api.call("GET", "/rooms", 422, "/rooms?limit=0")
    await api.call("GET", "/users", 422, "/users?after=%25")

    member = {"Authorization": f"Bearer {user['token']}"}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{server.url}/ws/{rid}/{user['id']}", params={"token": user["token"]}) as ws:
            await ws.receive_json(timeout=5)
            await ws.send_json({"content": "hello"})
            assert (await ws.receive_json(timeout=5))["content"] == "hello"
            presence = await api.call("GET", "/rooms/{room_id}/presence", 200, f"/rooms/{rid}/presence",
                                      headers=member)
            assert presence.json()[0]["connections"] == 1
    await api.call("GET", "/rooms/{room_id}/presence", 401, "/rooms/nowhere/presence", headers=member)
    messages = "/rooms/{room_id}/messages"
    assert len((await api.call("GET", messages, 200, f"/rooms/{rid}/messages", headers=member)).json()) == 1
    await api.call("GET", messages, 422, f"/rooms/{rid}/messages?limit=0", headers=member)
    await api.call("GET", messages, 401, f"/rooms/{rid}/messages")
    await api.call("GET", "/health", 200)  # with stats that are no longer zero

    documented = {(method, path, int(status)) for path, operations in document["paths"].items()
                  for method, operation in operations.items() for status in operation["responses"]}
    # Not provoked here: /health's 503 needs a broken database, and the writes' 503 a write lock held
    # for 5 s (tests/test_store.py holds one for less, with a shorter wait); the 429s need 200
    # creations (tests/test_creation_and_lists.py). With tokens required, a room that does not
    # exist is a 401 to read, like any room one is not a member of: 404 is without them.
    assert documented - api.checked == {("get", "/health", 503), ("post", "/users", 503), ("post", "/rooms", 503),
                                        ("post", "/rooms/{room_id}/join", 503), ("post", "/users", 429),
                                        ("post", "/rooms", 429), ("post", "/rooms/{room_id}/join", 429),
                                        ("get", "/rooms/{room_id}/messages", 404),
                                        ("get", "/rooms/{room_id}/presence", 404)}


def test_schemathesis_finds_no_server_error_and_no_schema_violation(start_server, tmp_path: Path):
    server = start_server()
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    st = Path(sys.executable).with_name("st")
    # All checks run by default (server errors, status codes, content types, schemas, headers,
    # negative data rejected, stateful links); the per-operation exceptions are in the config.
    # A fixed seed: the same cases in every run, so that CI is not a lottery. (Random seeds found,
    # about one run in eight, a GET whose URL passes aiohttp's 8190-byte line limit: aiohttp's own
    # plain-text 400, which the document does not describe; see the README's Limits and abuse.)
    result = subprocess.run(
        [str(st), "--no-color", "--config-file", str(config), "run", f"{server.url}/openapi.json",
         "--max-examples", "25", "--workers", "1", "--request-timeout", "5", "--seed", str(SCHEMATHESIS_SEED)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert "Server error" not in report
    assert "Traceback" not in server.log_text()
