"""C{redis://HOST:PORT/DB}, as C{--cluster} takes it."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

DEFAULT_REDIS_PORT = 6379


class RedisAddress(NamedTuple):
    host: str
    port: int
    db: int
    password: str | None


def parseRedisURL(url: str) -> RedisAddress:
    """The address in C{redis://[:PASSWORD@]HOST[:PORT][/DB]}; ValueError if it is not one."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"{url!r} is not redis://HOST[:PORT][/DB]")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: no query or fragment, please")
    port = parts.port or DEFAULT_REDIS_PORT      # ValueError if not a port
    path = parts.path.strip("/")
    if not path:
        db = 0
    elif path.isdigit():
        db = int(path)
    else:
        raise ValueError(f"{url!r}: the database must be a number, not {path!r}")
    return RedisAddress(parts.hostname, port, db, parts.password)
