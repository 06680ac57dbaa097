"""The WebSocket transport ({prefix}/ws): what one client may send."""
from __future__ import annotations

from dataclasses import dataclass

from pricefeed.settings.declaration import SettingsGroup, setting


@dataclass(frozen=True)
class WebSocketSettings(SettingsGroup):
    TITLE = "WebSocket"
    SUMMARY = "The WebSocket transport (web/streams/ws_transport.py): message size, message rate, idle time."
    ATTRIBUTE = "websocket"

    ws_max_message_bytes: int = setting(
        int, 4096, "Largest WebSocket message a client may send, bytes (close 1009).", minimum=128, maximum=1_048_576)
    ws_ops_per_second: float = setting(
        float, 10.0, "WebSocket messages a client may send per second after a burst (past it: close 1008).",
        minimum=0.1, maximum=10_000)
    ws_ops_burst: int = setting(
        int, 20, "WebSocket messages a client may send at once before the rate applies.", minimum=1, maximum=100_000)
    ws_idle_timeout: float = setting(
        float, 60.0,
        "Seconds a WebSocket may stay silent (no message, no pong to the server's pings) before it is "
        "closed; above PRICEFEED_HEARTBEAT_INTERVAL.", minimum=1, maximum=3600)
