"""The OpenAPI document of the HTTP API, served at /openapi.json."""

from typing import Any

from .config import VERSION


def openapi_document() -> dict[str, Any]:
    return {"openapi": "3.0.3", "info": {"title": "Chat rooms", "version": VERSION}, "paths": {}}
