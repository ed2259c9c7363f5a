"""What the server may say about a request: the client's address, and its path as a log may show it."""

from __future__ import annotations

import re

from aiohttp import web

# Anything that is not a printable ASCII character: a decoded %0A would end a log line, and an
# escape sequence would rewrite the terminal showing it.
UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


def loggable_path(request: web.BaseRequest) -> str:
    """The path as the client sent it, still percent-encoded and without the query (it may hold a token)."""
    path = request.raw_path.partition("?")[0]
    return UNPRINTABLE.sub(lambda match: "".join(f"%{byte:02X}" for byte in match[0].encode()), path)
