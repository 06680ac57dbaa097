"""The simulator's HTTP/WebSocket handler on top of gevent-websocket.

Two things gevent-websocket doesn't offer out of the box:
- every response, the 101 handshake included, carries `X-Pricefeed-Simulator: 1`
  so a client can label what it got from here as simulated;
- ping, pong and close frames are observed (for the pong deadline and the
  incoming-message limit). `WebSocket` uses `__slots__` and handles control
  frames inside `read_message()`, so a subclass forwards them to a listener.
It also lets the application refuse a handshake (a fault, an unknown path)
with a plain HTTP response before the upgrade happens, as Binance does.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Protocol

from geventwebsocket.exceptions import ProtocolError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Stream, WebSocket

SIMULATOR_HEADER = ("X-Pricefeed-Simulator", "1")
NO_STATUS_CODE = 1005


class FrameListener(Protocol):
    """Receives the control frames `read_message()` consumes."""

    def on_ping(self, payload: bytes) -> None: ...
    def on_pong(self, payload: bytes) -> None: ...
    def on_close_frame(self, code: int) -> None: ...


# What `refuse_handshake(environ)` returns to turn a handshake down.
Refusal = tuple[str, list[tuple[str, str]], bytes]


class SimulatorWebSocket(WebSocket):
    """A gevent-websocket `WebSocket` that reports control frames to its listener.

    It never answers a ping or a close itself: the listener does, through its
    own serialised writer, so a control frame can't interleave with a data
    frame another greenlet is writing.
    """

    __slots__ = ("listener",)

    def __init__(self, environ: dict[str, Any], stream: Stream, handler: WebSocketHandler) -> None:
        super().__init__(environ, stream, handler)
        self.listener: FrameListener | None = None

    def handle_ping(self, header: Any, payload: bytes) -> None:
        if self.listener is None:
            super().handle_ping(header, payload)
        else:
            self.listener.on_ping(bytes(payload))

    def handle_pong(self, header: Any, payload: bytes) -> None:
        if self.listener is not None:
            self.listener.on_pong(bytes(payload))

    def handle_close(self, header: Any, payload: bytes) -> None:
        if len(payload) == 1:
            raise ProtocolError("Invalid close frame payload")
        code = struct.unpack("!H", payload[:2])[0] if payload else NO_STATUS_CODE
        if self.listener is None:
            super().handle_close(header, payload)
        else:
            self.listener.on_close_frame(code)


class SimulatorHandler(WebSocketHandler):
    """gevent-websocket's handler, plus the identification header and refusals."""

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[..., Any]:
        # Every response goes through here: 101, REST, /_sim, errors, refusals.
        return super().start_response(status, list(headers) + [SIMULATOR_HEADER], exc_info)

    def upgrade_connection(self) -> list[bytes] | None:
        # The request target exactly as sent (still percent-encoded): what a length limit measures.
        self.environ.setdefault("RAW_URI", self.path)
        refuse = getattr(self.application, "refuse_handshake", None)
        refusal: Refusal | None = refuse(self.environ) if refuse else None
        if refusal is not None:
            status, headers, body = refusal
            self.start_response(status, headers + [("Connection", "close")])
            return [body]
        result = super().upgrade_connection()
        websocket = getattr(self, "websocket", None)
        if websocket is not None and not isinstance(websocket, SimulatorWebSocket):
            # The base class builds a plain WebSocket; swap in ours before any
            # frame is read. Marking the original closed keeps its __del__
            # from writing a close frame on the shared socket.
            replacement = SimulatorWebSocket(self.environ, Stream(self), self)
            websocket.closed = True
            self.websocket = replacement
            self.environ["wsgi.websocket"] = replacement
        return result
