"""An HTTP answer written straight to a socket, without gunicorn's response or Flask: the
door's 503 while shedding (door.py) and the JSON for gunicorn's own limit errors
(pricefeed/server/limits.py). Standard library only: the master loads it with the worker class.
"""
from __future__ import annotations

import json
from typing import NamedTuple


class DoorRefusal(NamedTuple):
    """The worker door's whole answer to a request head (door.py), and what the access
    log says of it."""
    response: bytes
    status: int
    reason: str         # the JSON `error`: at_capacity, or the 400's (malformed_interval, …)


def raw_json_response(status: int, reason: str, error: str, detail: str, headers: str = "") -> bytes:
    """A whole HTTP/1.1 response: the `{"error", "detail"}` body every client of pricefeed
    expects, and `Connection: close`. `headers`: more header lines, each ending in CRLF."""
    body = json.dumps({"detail": detail, "error": error}, separators=(",", ":")) + "\n"
    return (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"{headers}Content-Length: {len(body.encode())}\r\n\r\n{body}").encode()
