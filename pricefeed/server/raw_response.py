"""HTTP answers written straight to a socket, without gunicorn's response or the app.

Two cases: gunicorn refuses an oversized request line or header block before any
application sees it (gunicorn.conf.py bounds them so their cost cannot grow) and would
write an HTML page; and the door of a shedding worker answers a new stream before
gunicorn's parser (accept.py). pricefeed's clients expect `{"error", "detail"}` for every
refusal, so both are written here as JSON.

Standard library and gunicorn only: the master imports this with the worker class.
"""
from __future__ import annotations

import json
from typing import Any

from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine

_REFUSALS = (
    (LimitRequestLine, 414, "URI Too Long", "query_too_long",
     "the request line is longer than this server accepts ({limit} bytes)", "limit_request_line"),
    (LimitRequestHeaders, 431, "Request Header Fields Too Large", "headers_too_large",
     "too many request headers, or one too long ({limit} bytes at most)", "limit_request_field_size"),
)


def raw_json_response(status: int, reason: str, error: str, detail: str, headers: str = "") -> bytes:
    """A whole HTTP/1.1 response: the `{"error", "detail"}` body every client of pricefeed
    expects, and `Connection: close`. `headers`: more header lines, each ending in CRLF."""
    body = json.dumps({"detail": detail, "error": error}, separators=(",", ":")) + "\n"
    return (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"{headers}Content-Length: {len(body.encode())}\r\n\r\n{body}").encode()


def json_refusal(exc: BaseException, cfg: Any) -> bytes | None:
    """The whole HTTP response for a limit gunicorn enforces, or None if `exc` is not one."""
    for kind, status, reason, error, detail, setting in _REFUSALS:
        if isinstance(exc, kind):
            return raw_json_response(status, reason, error, detail.format(limit=getattr(cfg, setting, "?")))
    return None
