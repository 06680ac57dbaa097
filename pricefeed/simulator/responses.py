"""JSON responses for the simulator's plain HTTP endpoints (REST and /_sim)."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from .faults import status_line

StartResponse = Callable[..., Any]
MAX_BODY = 64 * 1024


def json_response(start_response: StartResponse, status: int, body: Any,
                  headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    """Send `body` as JSON with `status`; return the WSGI body."""
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    start_response(status_line(status), [("Content-Type", "application/json;charset=UTF-8"),
                                         ("Content-Length", str(len(data))), *headers])
    return [data]


def read_json_body(environ: dict[str, Any]) -> Any:
    """The request body parsed as JSON (`{}` when empty); ValueError when it isn't JSON."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise ValueError("bad Content-Length") from exc
    if length > MAX_BODY:
        raise ValueError(f"body larger than {MAX_BODY} bytes")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
