"""One GET to the exchange's REST API, and reading what comes back: statuses, headers, error bodies.

Shared by the REST price tier (rest.py) and the catalogue (catalogue_reader.py). No redirects
(a redirect could lead off TLS or to another host), the body read up to a cap, 5xx raised as
`ExchangeServerError` so a circuit breaker counts it, 4xx returned as answers to handle.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from email.message import Message
from typing import Any


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead off TLS or to another host: it is answered as the 3xx it is."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 - urllib's hook
        return None


# Proxies from the environment still apply (build_opener keeps its ProxyHandler).
OPENER = urllib.request.build_opener(_NoRedirects)


class ExchangeServerError(Exception):
    """A 5xx from the exchange: a failure of the service, which the breaker counts."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def get(url: str, timeout: float, max_body_bytes: int) -> tuple[int, Message, bytes]:
    """`(status, headers, body)`; a body over `max_body_bytes` comes back empty (it then parses
    as malformed). Raises ExchangeServerError for 5xx, OSError / HTTPException for the network."""
    try:
        with OPENER.open(url, timeout=timeout) as response:
            return response.status, response.headers, _read_capped(response, max_body_bytes)
    except urllib.error.HTTPError as error:
        with error:
            body = _read_capped(error, max_body_bytes)
        if error.code >= 500:
            raise ExchangeServerError(error.code, retry_after(error.headers)) from None
        return error.code, error.headers, body


def _read_capped(response, max_body_bytes: int) -> bytes:
    body = response.read(max_body_bytes + 1)
    return b"" if len(body) > max_body_bytes else body


def int_header(headers: Message | None, name: str) -> int | None:
    value = headers.get(name) if headers is not None else None
    try:
        return int(value.strip()) if value else None
    except ValueError:
        return None


def retry_after(headers: Message | None) -> float | None:
    """`Retry-After` in seconds (Binance sends seconds, never an HTTP date)."""
    seconds = int_header(headers, "Retry-After")
    return float(seconds) if seconds is not None and seconds > 0 else None


def error_reply(document: Any) -> tuple[int, str] | None:
    """`(code, msg)` of an error reply in either shape the exchange sends: the documented flat
    `{"code":-1121,"msg":".."}` or the nested `{"error":{"code":2,"msg":".."},"id":1}`."""
    if isinstance(document, (bytes, str)):
        try:
            document = json.loads(document)
        except (ValueError, RecursionError):
            return None
    if not isinstance(document, dict):
        return None
    nested = document.get("error")
    if isinstance(nested, dict):
        document = nested
    code, msg = document.get("code"), document.get("msg", "")
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    return code, str(msg)[:200]
