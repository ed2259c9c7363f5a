"""What the server may say about a request: the client's address, and its path as a log may show it."""

from __future__ import annotations

import ipaddress
import re

from aiohttp import web

from .config import IPNetwork, config_key

# Anything that is not a printable ASCII character: a decoded %0A would end a log line, and an
# escape sequence would rewrite the terminal showing it.
UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


def loggable_path(request: web.BaseRequest) -> str:
    """The path as the client sent it, still percent-encoded and without the query (it may hold a token)."""
    path = request.raw_path.partition("?")[0]
    return UNPRINTABLE.sub(lambda match: "".join(f"%{byte:02X}" for byte in match[0].encode()), path)


def client_address(request: web.BaseRequest) -> str:
    """The address of the client: the peer, or behind a trusted proxy the one its X-Forwarded-For names.

    Each proxy appends the address it was reached from, so the list is read from the
    right, skipping trusted proxies; the entries further left were written by the
    client itself and are not believed.
    """
    peer = request.remote or ""
    proxies = request.app[config_key].trusted_proxies
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = ",".join(request.headers.getall("X-Forwarded-For", ())).split(",")
    for hop in reversed(hops):
        hop = hop.strip()
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # not an address: nothing further along can be believed
    return peer


def _trusted(address: str, proxies: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)
