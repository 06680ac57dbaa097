"""Which web pages may use the API: `PRICEFEED_ALLOWED_ORIGINS`, exact match, same origin by default.

A browser names the page that makes a cross-site request in `Origin`. Without a
configured list only the service's own origin is allowed; `*` allows any, and
only when written. The same check serves every transport (SSE, JSON, and the
WebSocket handshake, where browsers always send Origin): `origin_allowed`.
A request without Origin is not from another site's page (a same-origin
EventSource GET, curl, a server) and is not an Origin question.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from pricefeed.settings.endpoint import EndpointSettings

ANY = "*"
PREFLIGHT_MAX_AGE_S = 600
ALLOWED_METHODS = "GET, HEAD, OPTIONS"
# What our own clients send: EventSource's Last-Event-ID, a poller's Authorization and caches.
ALLOWED_HEADERS = "Last-Event-ID, Authorization, Cache-Control, Content-Type"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _canonical(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, lower-cased, default port filled; None if unreadable."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port if port is not None else _DEFAULT_PORTS[parts.scheme]


def same_origin(origin: str, host_url: str) -> bool:
    """`origin` is the service's own: same host and port as the request's `host_url`.

    The scheme is compared only through the port: behind a proxy that ends TLS the
    request reaches us as http while the page is https, and the host the browser
    dialled is what identifies the site.
    """
    mine, theirs = _canonical(host_url), _canonical(origin)
    if mine is None or theirs is None:
        return False
    if mine[1] != theirs[1]:
        return False
    return mine[2] == theirs[2] or (mine[0] == "http" and theirs[0] == "https" and mine[2] == 80
                                    and theirs[2] == 443)


def origin_allowed(origin: str | None, host_url: str, endpoint: EndpointSettings) -> bool:
    """May a page from `origin` use the API served at `host_url`? None (no Origin header): yes."""
    if origin is None:
        return True
    if ANY in endpoint.allowed_origins:
        return True
    if origin.strip().lower().rstrip("/") in endpoint.allowed_origins:
        return True
    return same_origin(origin, host_url)


def cors_headers(origin: str | None, host_url: str, endpoint: EndpointSettings) -> dict[str, str]:
    """The CORS answer for an allowed cross-site Origin (nothing for the same origin or none)."""
    headers = {"Vary": "Origin"}
    if origin is None or not origin_allowed(origin, host_url, endpoint) or same_origin(origin, host_url):
        return headers
    # `*` as written only when the operator wrote `*`; otherwise the one origin that asked.
    headers["Access-Control-Allow-Origin"] = ANY if ANY in endpoint.allowed_origins else origin.strip()
    return headers


def preflight_headers() -> dict[str, str]:
    return {"Access-Control-Allow-Methods": ALLOWED_METHODS, "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S)}
