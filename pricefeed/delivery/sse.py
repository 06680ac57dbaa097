"""Server-Sent Events framing (the WHATWG `text/event-stream` format)."""
from __future__ import annotations

import json
from typing import Any

CONTENT_TYPE = "text/event-stream; charset=utf-8"
HEADERS = {
    "Cache-Control": "no-cache",
    # nginx buffers responses unless told not to; a buffered stream is not live.
    "X-Accel-Buffering": "no",
}


def encode_json(body: Any) -> str:
    """Compact JSON; it never contains a raw newline, which would end an SSE data line."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def event(name: str, body: Any, event_id: str | None = None) -> bytes:
    """One event: `id:` (optional), `event:`, one `data:` line, blank line."""
    return event_json(name, encode_json(body), event_id)


def event_json(name: str, data_json: str, event_id: str | None = None) -> bytes:
    """`event` with the body already encoded by encode_json."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {data_json}\n\n".encode()


def comment(text: str) -> bytes:
    """A comment line: ignored by EventSource, keeps proxies and idle timers from closing the stream."""
    return f": {text}\n\n".encode()


def retry(milliseconds: int) -> bytes:
    """The reconnection delay hint EventSource uses after a drop."""
    return f"retry: {int(milliseconds)}\n\n".encode()


PING = comment("ping")
