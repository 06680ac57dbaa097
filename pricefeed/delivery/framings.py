"""One event, framed once for every transport: the bytes the flusher shares between clients."""
from __future__ import annotations

from typing import Any

from pricefeed.delivery import sse, ws_frames


def framings(name: str, body: Any, event_id: str | None = None) -> tuple[bytes, ...]:
    """One event in every transport's framing (indexed by stream_client.SSE / WEBSOCKET); the
    body is encoded to JSON once."""
    data = sse.encode_json(body)
    return (sse.event_json(name, data, event_id), ws_frames.event_json(name, data, event_id))
