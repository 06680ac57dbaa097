"""A stream request, parsed once from the WSGI environ into checked values.

Both transports (/stream and /ws) and the JSON endpoints that share the query's
syntax (/prices, /history) parse here; everything after trusts the values. Any
malformed part is a JSON 400 naming it (errors.ApiError). Read straight from the
environ: a stream is opened without Flask's request object (routes.py).
"""
from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.datastructures import EnvironHeaders
from werkzeug.http import parse_cookie
from werkzeug.wsgi import get_current_url

from pricefeed.delivery.pace import MAX_INTERVAL_MS, MIN_INTERVAL_MS, pace_in_force
from pricefeed.node import Node
from pricefeed.pairs import PairError
from pricefeed.web.errors import ApiError
from pricefeed.web.policy.client_address import client_ip, client_key

_EVENT_ID = re.compile(r"^([0-9]{1,19})-([0-9]{1,19})$")
_INTERVAL = re.compile(r"^[0-9]{1,5}$")

SSE, WEBSOCKET = "sse", "websocket"


def query_arguments(environ: dict) -> dict[str, str]:
    """The first value of each query argument, decoded as werkzeug's `request.args` does."""
    raw = environ.get("QUERY_STRING", "")
    if not raw:
        return {}
    text = raw.encode("latin-1", "replace").decode("utf-8", "replace")
    arguments: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, errors="replace"):
        arguments.setdefault(key, value)
    return arguments


def parse_pairs(raw: str | None, node: Node) -> tuple[str, ...]:
    """`pairs`: absent, the configured set; else each resolved against the served catalog."""
    try:
        pairs = node.catalog.resolve_list(raw, node.config.endpoint.max_pairs_per_request)
    except PairError as exc:
        raise ApiError(400, exc.error, exc.detail) from None
    return tuple(pair.name for pair in pairs)


def parse_interval(raw: str | None, node: Node) -> int:
    """The pace in force for `interval` (ms): 0 every tick, or 100..60000, raised to the
    deployment's floor (PRICEFEED_MIN_UPDATE_INTERVAL); absent: that floor."""
    if raw is None:
        return pace_in_force(None, node.config.delivery.min_update_interval)
    if not _INTERVAL.match(raw) or not (int(raw) == 0 or MIN_INTERVAL_MS <= int(raw) <= MAX_INTERVAL_MS):
        raise ApiError(400, "malformed_interval", f"interval must be 0 (every tick) or whole milliseconds "
                       f"from {MIN_INTERVAL_MS} to {MAX_INTERVAL_MS}, got {raw[:20]!r}")
    return pace_in_force(int(raw), node.config.delivery.min_update_interval)


def parse_last_event_id(raw: str | None) -> tuple[int, int] | None:
    """The resume point (epoch, seq) of `Last-Event-ID` / `lastEventId`; None: a fresh start."""
    if raw is None or raw == "":
        return None
    match = _EVENT_ID.match(raw.strip())
    if not match:
        raise ApiError(400, "malformed_last_event_id",
                       "Last-Event-ID must be an id this server sent, like 1700000000000-42")
    return int(match.group(1)), int(match.group(2))


@functools.lru_cache(maxsize=4096)
def address_key(remote: str | None, forwarded_for: str | None, trusted_proxies: tuple) -> str:
    """client_address.client_key of the only two headers it reads, remembered: a browser that
    reconnects (or one NAT's many) asks again with the same ones."""
    environ = {"REMOTE_ADDR": remote} if remote is not None else {}
    if forwarded_for is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client_key(environ, trusted_proxies)


class StreamRequest:
    """One request for a stream, checked: what the session acts on, and what a host's
    `@feed.authorize` callback is given (`headers`, `cookies`, `address`, `pairs`, `transport`)."""

    __slots__ = ("environ", "transport", "pairs", "pace_ms", "resume_from", "origin", "address",
                 "_trusted", "_headers", "_cookies")

    def __init__(self, environ: dict, transport: str, pairs: tuple[str, ...], pace_ms: int,
                 resume_from: tuple[int, int] | None, trusted_proxies: tuple):
        self.environ = environ
        self.transport = transport                    # SSE or WEBSOCKET
        self.pairs = pairs
        self.pace_ms = pace_ms
        self.resume_from = resume_from
        self.origin: str | None = environ.get("HTTP_ORIGIN")
        # The per-address limits' key: an IPv4 address or an IPv6 /64 (policy/client_address.py).
        self.address = address_key(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"),
                                   trusted_proxies)
        self._trusted = trusted_proxies
        self._headers: EnvironHeaders | None = None
        self._cookies: Any = None

    @property
    def headers(self) -> EnvironHeaders:
        """The request's headers (case-insensitive), built on first use."""
        if self._headers is None:
            self._headers = EnvironHeaders(self.environ)
        return self._headers

    @property
    def cookies(self) -> Any:
        """The request's cookies (a MultiDict, as Flask's `request.cookies`), parsed on first use."""
        if self._cookies is None:
            self._cookies = parse_cookie(self.environ)
        return self._cookies

    @property
    def client_ip(self) -> str | None:
        """The client's own address under the trusted-proxy rule (not reduced to a /64)."""
        address = client_ip(self.environ, self._trusted)
        return None if address is None else str(address)


def host_url(environ: dict) -> str:
    """`request.host_url` from the environ (what an Origin is compared with)."""
    return get_current_url(environ, host_only=True)


def parse_stream_request(environ: dict, node: Node, transport: str) -> StreamRequest:
    """Parse and check one stream request; ApiError (a JSON 4xx) for the first bad part."""
    arguments = query_arguments(environ)
    pairs = parse_pairs(arguments.get("pairs"), node)
    pace_ms = parse_interval(arguments.get("interval"), node)
    raw_id = environ.get("HTTP_LAST_EVENT_ID")
    resume_from = parse_last_event_id(arguments.get("lastEventId") if raw_id is None else raw_id)
    return StreamRequest(environ, transport, pairs, pace_ms, resume_from, node.config.endpoint.trusted_proxies)
