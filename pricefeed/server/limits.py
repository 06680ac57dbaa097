"""gunicorn's own refusals of an oversized request line or header block, answered in JSON.

gunicorn refuses such a request before any application sees it (gunicorn.conf.py bounds
them so that their cost cannot grow), and writes an HTML page. pricefeed's clients expect
`{"error", "detail"}` for every bad request: the worker's handle_error answers these two
with this; everything else is gunicorn's as before.

Standard library and gunicorn only: the master imports this with the worker class.
"""
from __future__ import annotations

from typing import Any

from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine

from pricefeed.web.streams.raw_response import raw_json_response

_REFUSALS = (
    (LimitRequestLine, 414, "URI Too Long", "query_too_long",
     "the request line is longer than this server accepts ({limit} bytes)", "limit_request_line"),
    (LimitRequestHeaders, 431, "Request Header Fields Too Large", "headers_too_large",
     "too many request headers, or one too long ({limit} bytes at most)", "limit_request_field_size"),
)


def json_refusal(exc: BaseException, cfg: Any) -> bytes | None:
    """The whole HTTP response for a limit gunicorn enforces, or None if `exc` is not one."""
    for kind, status, reason, error, detail, setting in _REFUSALS:
        if isinstance(exc, kind):
            return raw_json_response(status, reason, error, detail.format(limit=getattr(cfg, setting, "?")))
    return None
