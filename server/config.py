"""Settings, read once at start-up from the environment, a `.env` file and flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

VERSION = "1.0.0"
# Which process this is, in /health and the shared store's process table: several may serve one site.
PROCESS_NAME = f"{socket.gethostname()}:{os.getpid()}"
ENVIRONMENTS = ("development", "production")
ANY_ORIGIN = "*"
NO_TOKEN_DECISION = (
    "ENVIRONMENT=production needs REQUIRE_TOKENS set: true (recommended: a user's socket and join "
    "must carry its token) or false (only for old clients that send no token: anyone who knows a "
    "user id can then post as that user)"
)
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A setting has a value the server cannot use; the message names it."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of the server (see API.md); None means "the environment's default"."""

    environment: str = "development"
    allow_websocket_auto_rooms: bool | None = None
    allow_websocket_auto_users: bool | None = None
    allow_join_auto_rooms: bool | None = None
    allow_join_auto_users: bool | None = None
    # None: not set. Production refuses to start without a decision (see __post_init__).
    require_tokens: bool | None = None
    cors_origins: tuple[str, ...] | None = None
    cors_origin_regex: str | None = None
    cors_allow_credentials: bool = True
    allowed_hosts: tuple[str, ...] = ()  # empty: any Host is served
    host: str = "127.0.0.1"
    port: int = 8000
    db_path: Path = Path("chat.db")
    database_url: str | None = None
    database_notifications: bool = True
    log_level: str = "INFO"
    max_message_length: int = 4000
    max_frame_bytes: int = 65536
    max_body_bytes: int = 65536
    rate_limit_per_second: float = 20
    rate_limit_burst: int = 40
    send_queue_limit: int = 1048576
    max_connections_per_user: int = 20
    max_connections_per_address: int = 0
    heartbeat_seconds: float = 25
    header_timeout_seconds: float = 10
    body_timeout_seconds: float = 10  # 0: none
    # None: the open-file limit less what the process needs besides connections (see server/listener.py).
    max_open_connections: int | None = None
    history_cache_bytes: int = 32 * 1024 * 1024
    create_rate_per_minute: float = 600
    trusted_proxies: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise ConfigError(f"ENVIRONMENT={self.environment}: expected one of {', '.join(ENVIRONMENTS)}")
        production = self.environment == "production"
        # The old app's rule: auto-creation is on in production, off in development.
        for flag in ("allow_websocket_auto_rooms", "allow_websocket_auto_users",
                     "allow_join_auto_rooms", "allow_join_auto_users"):
            if getattr(self, flag) is None:
                object.__setattr__(self, flag, production)
        if self.require_tokens is None:
            if production:
                raise ConfigError(NO_TOKEN_DECISION)
            object.__setattr__(self, "require_tokens", False)
        if self.cors_origins is None:
            object.__setattr__(self, "cors_origins", () if production else (ANY_ORIGIN,))
        if self.cors_origin_regex:
            try:
                re.compile(self.cors_origin_regex)
            except re.error as exc:
                raise ConfigError(f"CORS_ORIGIN_REGEX={self.cors_origin_regex}: not a regular expression ({exc})") from None
        hosts = tuple(split_host(entry) for entry in self.allowed_hosts)
        for entry, host in zip(self.allowed_hosts, hosts):
            if host is None or host[1] is not None:
                raise ConfigError(f"ALLOWED_HOSTS={entry}: expected host names without a port (any port of a "
                                  "listed name is served), IPv6 addresses in brackets, separated by commas")
        object.__setattr__(self, "allowed_hosts", tuple(name for name, _ in hosts))
        if self.log_level not in logging.getLevelNamesMapping():
            raise ConfigError(f"LOG_LEVEL={self.log_level}: expected DEBUG, INFO, WARNING or ERROR")
        if not 0 < self.port < 65536:
            raise ConfigError(f"PORT={self.port}: expected a port number from 1 to 65535")
        object.__setattr__(self, "db_path", Path(self.db_path))
        if self.database_url and urlsplit(self.database_url).scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"DATABASE_URL={redact(self.database_url)}: expected postgresql://user:password@host:port/database")
        object.__setattr__(self, "trusted_proxies", tuple(map(parse_network, self.trusted_proxies)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env"),
                 **overrides: object) -> Config:
        """Settings from `.env`, then the environment (which wins), then `overrides` (flags)."""
        values = dict(read_dotenv(dotenv)) if dotenv else {}
        values.update(os.environ if environ is None else environ)
        fields = {}
        for setting in SETTINGS:
            raw = values.get(setting.variable, "").strip()
            if raw:
                fields[setting.field] = setting.parse(raw)
        fields.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class Setting:
    variable: str
    field: str
    kind: str  # "text", "bool", "int", "number", "origins" or "list"

    def parse(self, raw: str) -> object:
        if self.kind == "bool":
            if raw.lower() in ("true", "1", "yes", "on"):
                return True
            if raw.lower() in ("false", "0", "no", "off"):
                return False
            raise ConfigError(f"{self.variable}={raw}: expected true or false")
        if self.kind in ("int", "number"):
            try:
                number = int(raw) if self.kind == "int" else float(raw)
            except ValueError:
                number = -1
            if number < 0:
                kind = "whole number" if self.kind == "int" else "number"
                raise ConfigError(f"{self.variable}={raw}: expected a {kind}, 0 or more")
            return number
        if self.kind == "origins":
            return tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())
        if self.kind == "list":
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        return raw.upper() if self.variable == "LOG_LEVEL" else raw


def parse_network(text: str | IPNetwork) -> IPNetwork:
    """A TRUSTED_PROXIES entry: an address, or a network like 10.0.0.0/8."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(f"TRUSTED_PROXIES={text}: expected addresses or networks like 10.0.0.0/8, "
                          "separated by commas") from None


SETTINGS = (
    Setting("ENVIRONMENT", "environment", "text"),
    Setting("ALLOW_WEBSOCKET_AUTO_ROOMS", "allow_websocket_auto_rooms", "bool"),
    Setting("ALLOW_WEBSOCKET_AUTO_USERS", "allow_websocket_auto_users", "bool"),
    Setting("ALLOW_JOIN_AUTO_ROOMS", "allow_join_auto_rooms", "bool"),
    Setting("ALLOW_JOIN_AUTO_USERS", "allow_join_auto_users", "bool"),
    Setting("REQUIRE_TOKENS", "require_tokens", "bool"),
    Setting("CORS_ORIGINS", "cors_origins", "origins"),
    Setting("CORS_ORIGIN_REGEX", "cors_origin_regex", "text"),
    Setting("CORS_ALLOW_CREDENTIALS", "cors_allow_credentials", "bool"),
    Setting("ALLOWED_HOSTS", "allowed_hosts", "list"),
    Setting("HOST", "host", "text"),
    Setting("PORT", "port", "int"),
    Setting("DATABASE_PATH", "db_path", "text"),
    Setting("DATABASE_URL", "database_url", "text"),
    Setting("DATABASE_NOTIFICATIONS", "database_notifications", "bool"),
    Setting("LOG_LEVEL", "log_level", "text"),
    Setting("MAX_MESSAGE_LENGTH", "max_message_length", "int"),
    Setting("MAX_FRAME_BYTES", "max_frame_bytes", "int"),
    Setting("MAX_BODY_BYTES", "max_body_bytes", "int"),
    Setting("RATE_LIMIT_PER_SECOND", "rate_limit_per_second", "number"),
    Setting("RATE_LIMIT_BURST", "rate_limit_burst", "int"),
    Setting("SEND_QUEUE_LIMIT", "send_queue_limit", "int"),
    Setting("MAX_CONNECTIONS_PER_USER", "max_connections_per_user", "int"),
    Setting("MAX_CONNECTIONS_PER_ADDRESS", "max_connections_per_address", "int"),
    Setting("HEARTBEAT_SECONDS", "heartbeat_seconds", "number"),
    Setting("HEADER_TIMEOUT_SECONDS", "header_timeout_seconds", "number"),
    Setting("BODY_TIMEOUT_SECONDS", "body_timeout_seconds", "number"),
    Setting("MAX_OPEN_CONNECTIONS", "max_open_connections", "int"),
    Setting("HISTORY_CACHE_BYTES", "history_cache_bytes", "int"),
    Setting("CREATE_RATE_PER_MINUTE", "create_rate_per_minute", "number"),
    Setting("TRUSTED_PROXIES", "trusted_proxies", "list"),
)


# A Host header's value: a name or IPv4 address, or an IPv6 address in brackets; then maybe a port.
HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(\d{1,5}))?", re.IGNORECASE)


def split_host(value: str) -> tuple[str, str | None] | None:
    """The name (lowercased, without a trailing dot) and port of a Host value; None if it is not one."""
    match = HOST.fullmatch(value)
    if match is None or not match[1].rstrip("."):
        return None
    return match[1].lower().rstrip("."), match[2]


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a `.env` file; comments, blank lines and `export ` are allowed."""
    if not path.is_file():
        return {}
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep:
            raise ConfigError(f"{path}, line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def redact(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


config_key = web.AppKey("chat.config", Config)
