"""Which browser origins may use the API (CORS for HTTP, the Origin check for sockets), and which Host names are served."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

from .config import ANY_ORIGIN, Config, split_host


class OriginPolicy:
    """The allowed origins of CORS_ORIGINS and CORS_ORIGIN_REGEX, plus the server's own host; and ALLOWED_HOSTS."""

    def __init__(self, config: Config) -> None:
        origins = config.cors_origins or ()
        self.allow_any = ANY_ORIGIN in origins
        self.exact = frozenset(origins)
        self.pattern = re.compile(config.cors_origin_regex) if config.cors_origin_regex else None
        self.allowed_hosts = frozenset(config.allowed_hosts)

    def serves_host(self, host: str | None) -> bool:
        """Whether a request with this `Host` header is answered: any, unless ALLOWED_HOSTS lists names.

        Names only, with any port: the same server is reached on its own port and
        on the proxy's. What matters is the name a browser put there, which for a
        DNS-rebinding page is the attacker's, whatever address it points to.
        """
        if not self.allowed_hosts:
            return True
        parts = split_host(host or "")
        return parts is not None and parts[0] in self.allowed_hosts

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a request with this `Origin` header, sent to this `Host`, may proceed.

        No Origin means no browser (a script or a native client) and is not
        cross-site. A page served by this server (same host and port; the scheme
        may differ behind a TLS-terminating proxy) is never cross-site either,
        if its host is one the server serves.
        """
        if origin is None or self.allow_any or origin in self.exact:
            return True
        if self.pattern is not None and self.pattern.fullmatch(origin):
            return True
        return host is not None and self.serves_host(host) and urlsplit(origin).netloc.lower() == host.lower()


origin_policy_key = web.AppKey("chat.origin_policy", OriginPolicy)
