"""How a configured URL (exchange, REST, Redis) may be shown in logs, /health and errors."""
from __future__ import annotations

import re

_SHOWN_PATH = re.compile(r"^(/[A-Za-z0-9_.-]{1,64}){0,2}$")


def reduce_url(url: str | None) -> str | None:
    """A URL as it may be shown anywhere: scheme://host:port[/db] — no user, password, query or
    fragment (redis-py also takes `?password=`), and for Redis only a db (or sentinel master) path."""
    if not url:
        return url
    scheme, _, rest = url.partition("://")
    if not rest:
        return "(unparsable URL)"
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]            # drop user:password@
    path = ("/" + path) if slash else ""
    if scheme == "unix":
        return f"unix://{path}"
    if not (scheme.startswith("redis") and _SHOWN_PATH.match(path.rstrip("/"))):
        path = ""
    return f"{scheme}://{authority}{path.rstrip('/')}"
