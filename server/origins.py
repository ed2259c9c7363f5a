"""Which browser origins may use the API: CORS for HTTP and the Origin check for sockets."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

from .config import ANY_ORIGIN, Config


class OriginPolicy:
    """The allowed origins of CORS_ORIGINS and CORS_ORIGIN_REGEX, plus the server's own host."""

    def __init__(self, config: Config) -> None:
        origins = config.cors_origins or ()
        self.allow_any = ANY_ORIGIN in origins
        self.exact = frozenset(origins)
        self.pattern = re.compile(config.cors_origin_regex) if config.cors_origin_regex else None

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a request with this `Origin` header, sent to this `Host`, may proceed.

        No Origin means no browser (a script or a native client) and is not
        cross-site. A page served by this server (same host and port; the scheme
        may differ behind a TLS-terminating proxy) is never cross-site either.
        """
        if origin is None or self.allow_any or origin in self.exact:
            return True
        if self.pattern is not None and self.pattern.fullmatch(origin):
            return True
        return host is not None and urlsplit(origin).netloc.lower() == host.lower()


origin_policy_key = web.AppKey("chat.origin_policy", OriginPolicy)
