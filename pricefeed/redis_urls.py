"""The Redis Sentinel URL grammar: `redis+sentinel://[user:password@]h1:26379[,h2:26379]/<master>[/<db>]`.

The cluster side connects with it (cluster/redis_client.py); the cluster settings' parser checks
it at start-up (settings/parsers.py), so an invalid URL stops start-up with a ConfigError that
names PRICEFEED_REDIS_URL. Settings are in the base layer, which the cluster side sits on: the
grammar lives here, in the base layer, for both.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelURL:
    """A sentinel URL, parsed once.

    The credentials are the master's (and its replicas'); the sentinels' own come from
    PRICEFEED_REDIS_SENTINEL_USERNAME / _PASSWORD.
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel_url(text: str) -> SentinelURL:
    """Parse strictly; a ValueError names what is wrong and never contains the password."""
    scheme, sep, rest = text.strip().partition("://")
    if scheme != SENTINEL_SCHEME or not sep:
        raise ValueError(f"expected {SENTINEL_SCHEME}://host:port[,host:port]/master[/db]")
    if "?" in rest or "#" in rest:
        raise ValueError("a sentinel URL takes no query or fragment")
    authority, _, path = rest.partition("/")
    userinfo, at, hostlist = authority.rpartition("@")
    if not at:
        userinfo, hostlist = "", authority
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon and user:
            # redis://secret@host is read by redis-py as a password: do the same.
            username, password = None, unquote(user)
    sentinels = tuple(_sentinel_address(item) for item in hostlist.split(","))
    parts = path.split("/") if path else []
    if not parts or not parts[0] or len(parts) > 2:
        raise ValueError("expected the master's name after the hosts: .../<master-name>[/<db>]")
    master = unquote(parts[0])
    if not all(c.isalnum() or c in "-_." for c in master):
        raise ValueError("the master name may hold letters, digits, '-', '_' and '.' only")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit() or int(parts[1]) > 15:
            raise ValueError("the database must be a number 0-15")
        db = int(parts[1])
    return SentinelURL(sentinels, master, db, username, password)


def _sentinel_address(item: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):
        host, close, port_text = item[1:].partition("]")
        port_text = port_text[1:] if port_text.startswith(":") else port_text
        if not close or not host:
            raise ValueError("malformed [IPv6] sentinel address")
    else:
        host, _, port_text = item.partition(":")
    if not host or not all(c.isalnum() or c in "-_.:" for c in host):
        raise ValueError("every sentinel needs a host (host:port, comma-separated)")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("a sentinel port must be a number 1-65535")
    return host, int(port_text)
