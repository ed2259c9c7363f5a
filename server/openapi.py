"""The OpenAPI 3 document of the HTTP API, served at /openapi.json (the socket is described in API.md)."""

from __future__ import annotations

from typing import Any

from .config import VERSION
from .db import MAX_ID, MAX_ROOM_NAME, MAX_USERNAME


# Names are stripped of whitespace (as Python's str.strip sees it) before their length is checked.
_SPACE = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
ONE_VISIBLE = f"[^{_SPACE}]"  # a room name: some character that is not whitespace
TWO_VISIBLE = rf"[^{_SPACE}][\s\S]*[^{_SPACE}]"  # a username: two, so that it is 2 long once stripped


def _text(max_length: int | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **extra}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required if required is not None else list(properties)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {401: "Missing or wrong token", 403: "Origin not allowed", 404: "Not found",
               413: "Body too large", 422: "Invalid input",
               429: "Too many users and rooms created from this address (CREATE_RATE_PER_MINUTE); see Retry-After",
               503: "The store cannot write now: locked by another program (the sqlite3 shell, say), or the disk is full"}
    return {str(status): _json(_ref("Error"), reasons[status]) for status in statuses}


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _text(MAX_ID)}


def _query_int(name: str, description: str, minimum: int, maximum: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


CURSOR = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"  # unpadded base64url, not empty


def _page_of(schema_name: str) -> dict[str, Any]:
    """GET /users and GET /rooms: a page in creation order, linking to the next."""
    return {
        "summary": f"{schema_name}s in creation order, a page at a time",
        "parameters": [_query_int("limit", "Page size (default and most 1000)", 1, 1000),
                       {"name": "after", "in": "query", "required": False, "schema": _text(minLength=2, pattern=CURSOR),
                        "description": "The cursor from the previous page's Link header"}],
        "responses": {"200": {**_json({"type": "array", "items": _ref(schema_name)}), "headers": {"Link": {
            "description": 'The next page, `<URL>; rel="next"`; absent on the last page', "schema": _text()}}},
            **_errors(422)},
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


TIMESTAMP = _text(format="date-time", description="ISO 8601 UTC, ending in Z")

SCHEMAS: dict[str, Any] = {
    "Error": _object({"detail": _text()}),
    "User": _object({"id": _text(), "username": _text(), "joined_at": TIMESTAMP}),
    "NewUser": _object({"id": _text(), "username": _text(), "joined_at": TIMESTAMP,
                        "token": _text(description="Shown once, here only")}),
    "Room": _object({"id": _text(), "name": _text(), "created_at": TIMESTAMP,
                     "users": {"type": "array", "items": _text(), "description": "Member user ids"}}),
    "Message": _object({"id": _text(), "seq": {"type": "integer", "minimum": 1}, "room_id": _text(),
                        "user_id": _text(), "username": _text(), "content": _text(), "timestamp": TIMESTAMP}),
    "Presence": _object({"user_id": _text(), "username": _text(), "connections": {"type": "integer", "minimum": 1}}),
    "Joined": _object({"message": _text(), "token": _text(description="Only when the join created the user")},
                      ["message"]),
    "Health": _object({
        "status": _text(enum=["healthy", "unhealthy"]), "timestamp": TIMESTAMP, "version": _text(),
        "environment": _text(),
        "services": _object({"api": _text(), "websocket": _text(), "database": _text()}),
        "stats": _object({name: {"type": "integer", "nullable": True} for name in (
            "active_rooms", "active_users", "total_messages", "connections", "rooms", "users")}),
        "store": _text(enum=["sqlite", "postgresql"]),
        "process": _text(description="host:pid of the process that answered; several may serve one site"),
        "detail": _text(description="Only while writes fail (a full disk), until one succeeds again"),
    }, ["status", "timestamp", "version", "environment", "services", "stats", "store", "process"]),
    "DebugFlags": _object({name: {"type": "boolean"} for name in (
        "auto_create_on_ws", "auto_user_on_ws", "auto_create_on_join", "auto_user_on_join", "require_tokens",
        "has_rooms", "has_users")} | {"environment": _text()}),
    "Service": _object({"message": _text(), "version": _text(), "health": _text(), "chat": _text(),
                        "docs": _text(), "openapi": _text()}),
}


def openapi_document() -> dict[str, Any]:
    room_id, user_id = _path_id("room_id"), _path_id("user_id")
    return {
        "openapi": "3.0.3",
        "info": {"title": "Chat rooms", "version": VERSION,
                 "description": "HTTP API of the chat server. The socket /ws/{room_id}/{user_id} is in API.md."},
        "paths": {
            "/": {"get": {"summary": "Service info", "responses": {"200": _json(_ref("Service"))}}},
            "/health": {"get": {"summary": "Health and live stats", "responses": {
                "200": _json(_ref("Health")), "503": _json(_ref("Health"), "The database does not answer, or writes fail")}}},
            "/_debug": {"get": {"summary": "Effective auto-creation flags", "responses": {
                "200": _json(_ref("DebugFlags"))}}},
            "/users": {
                "get": _page_of("User"),
                "post": {"summary": "Create a user", "requestBody": _body(_object(
                    {"username": _text(MAX_USERNAME, minLength=2, pattern=TWO_VISIBLE)})),
                    "responses": {"200": _json(_ref("NewUser")), **_errors(403, 413, 422, 429, 503)}},
            },
            "/users/{user_id}": {"get": {"summary": "One user", "parameters": [user_id], "responses": {
                "200": _json(_ref("User")), **_errors(404)}}},
            "/rooms": {
                "get": _page_of("Room"),
                "post": {"summary": "Create a room", "requestBody": _body(_object(
                    {"name": _text(MAX_ROOM_NAME, minLength=1, pattern=ONE_VISIBLE)})),
                    "responses": {"200": _json(_ref("Room")), **_errors(403, 413, 422, 429, 503)}},
            },
            "/rooms/{room_id}": {"get": {"summary": "One room", "parameters": [room_id], "responses": {
                "200": _json(_ref("Room")), **_errors(404)}}},
            "/rooms/{room_id}/messages": {"get": {
                "summary": "A page of a room's messages, oldest first",
                "parameters": [room_id, _query_int("limit", "Page size (default 50)", 1, 1000),
                               _query_int("before", "Only messages with a smaller seq", 0),
                               _query_int("after", "Only messages with a larger seq", 0)],
                "responses": {"200": _json({"type": "array", "items": _ref("Message")}), **_errors(401, 404, 422)}}},
            "/rooms/{room_id}/presence": {"get": {"summary": "Who is connected now", "parameters": [room_id],
                                                  "responses": {"200": _json({"type": "array",
                                                                              "items": _ref("Presence")}),
                                                                **_errors(401, 404)}}},
            "/rooms/{room_id}/join": {"post": {
                "summary": "Join a room (before opening its socket)", "parameters": [room_id],
                # null counts as absent for the optional fields, as older clients send it.
                "requestBody": _body(_object({"user_id": _text(MAX_ID), "username": _text(MAX_USERNAME, nullable=True),
                                              "token": _text(200, nullable=True)}, ["user_id"])),
                "responses": {"200": _json(_ref("Joined")), **_errors(401, 403, 404, 413, 422, 429, 503)}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": _text()}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}},
            "/chat": {"get": {"summary": "The chat page", "responses": {
                "200": {"description": "HTML", "content": {"text/html": {"schema": _text()}}}}}},
            "/docs": {"get": {"summary": "This document as an interactive page (Swagger UI)", "responses": {
                "200": {"description": "HTML", "content": {"text/html": {"schema": _text()}}}}}},
        },
        "components": {"schemas": SCHEMAS},
    }
