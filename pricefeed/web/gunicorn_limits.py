"""gunicorn's own refusals of an oversized request line or header block, answered in JSON.

gunicorn refuses such a request before any application sees it (gunicorn.conf.py bounds
them so that their cost cannot grow), and writes an HTML page. pricefeed's clients expect
`{"error", "detail"}` for every bad request, so the worker's error handler is wrapped:
these two refusals get a JSON body, everything else is gunicorn's as before.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine

_REFUSALS = (
    (LimitRequestLine, 414, "URI Too Long", "query_too_long",
     "the request line is longer than this server accepts ({limit} bytes)", "limit_request_line"),
    (LimitRequestHeaders, 431, "Request Header Fields Too Large", "headers_too_large",
     "too many request headers, or one too long ({limit} bytes at most)", "limit_request_field_size"),
)


def raw_json_response(status: int, reason: str, error: str, detail: str, headers: str = "") -> bytes:
    """A whole HTTP/1.1 response, written to the socket without gunicorn or Flask: the
    `{"error", "detail"}` body every client of pricefeed expects, and `Connection: close`.
    `headers`: more header lines, each ending in CRLF."""
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


def answer_limits_in_json(worker: Any) -> None:
    """Wrap this worker's `handle_error` (see the module docstring)."""
    original: Callable = worker.handle_error

    def handle_error(req, client, addr, exc):
        response = json_refusal(exc, worker.cfg)
        if response is None:
            return original(req, client, addr, exc)
        worker.log.debug("refused: %s", exc)
        try:
            client.sendall(response)
        except OSError:
            pass      # the client went away before hearing why
        return None
    worker.handle_error = handle_error
