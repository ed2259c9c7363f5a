"""/docs: Swagger UI, from the files the swagger-ui-py package ships, on this server's /openapi.json.

Only the two files the page needs are served (the package also carries the
Swagger Editor and source maps), and nothing comes from a CDN.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web

SWAGGER_UI_DIR = Path(str(files("swagger_ui") / "static"))
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css")

# What Swagger UI needs, checked in Chromium: its icons are data: URLs, and it sets styles from
# script (allowed under style-src 'self'), so no inline script or style is let in.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)


@aiohttp_jinja2.template("docs.html")
async def docs_page(request: web.Request) -> dict[str, Any]:
    return {}


async def docs_asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(SWAGGER_UI_DIR / name)
