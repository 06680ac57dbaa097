"""One WebSocket to the exchange, read by its own greenlet, and the feed's counters."""
from __future__ import annotations

from typing import Callable

import gevent
import websocket

from pricefeed.logs import short_reason

CLOSE_GRACE_SECONDS = 1.0


class UpstreamConnection:
    """One WebSocket to the exchange and the greenlet that reads it."""

    def __init__(self, ws: websocket.WebSocket, number: int, simulated: bool,
                 on_data: Callable[["UpstreamConnection", bytes, bool], None],
                 on_end: Callable[["UpstreamConnection"], None],
                 clock: Callable[[], float]):
        self.ws = ws
        self.number = number
        self.simulated = simulated
        self._on_data = on_data
        self._on_end = on_end
        self._clock = clock
        self.opened_at = clock()
        self.last_data_at = self.opened_at
        self.first_data_at: float | None = None
        self.pings = 0
        self.shutdown_announced = False
        self.ended = False
        self.end_reason = ""
        self.close_code: int | None = None
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        try:
            while True:
                opcode, frame = self.ws.recv_data_frame(True)
                if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    now = self._clock()
                    self.last_data_at = now
                    if self.first_data_at is None:
                        self.first_data_at = now
                    self._on_data(self, frame.data, opcode == websocket.ABNF.OPCODE_BINARY)
                elif opcode == websocket.ABNF.OPCODE_PING:
                    self.pings += 1  # websocket-client has already sent the one pong
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    self.close_code = _close_code(frame.data)
                    self.end_reason = f"closed by server ({self.close_code})"
                    return
        except gevent.GreenletExit:
            self.end_reason = self.end_reason or "closed by us"
        except Exception as exc:  # noqa: BLE001 - any socket/protocol error ends this connection only
            self.end_reason = self.end_reason or short_reason(exc)
        finally:
            self.ended = True
            try:
                self.ws.shutdown()
            finally:
                self._on_end(self)

    def close(self, reason: str) -> None:
        """Close politely, then for sure: a server that never answers the close cannot hold us."""
        if self.ended:
            return
        self.end_reason = reason
        try:
            self.ws.send_close(websocket.STATUS_NORMAL)
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass
        gevent.spawn_later(CLOSE_GRACE_SECONDS, self.reader.kill, block=False)

    def age(self) -> float:
        return self._clock() - self.opened_at


def _close_code(data: bytes | str) -> int | None:
    if isinstance(data, str):
        data = data.encode()
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


class FeedStats:
    """Counters the health endpoint and the tests read."""

    def __init__(self) -> None:
        self.connects = 0            # connections opened
        self.reconnects = 0          # connections opened to replace a lost one (not rotations)
        self.connect_attempts = 0
        self.connect_failures = 0
        self.handshake_refusals = 0  # 429/418/... on the handshake
        self.rotations = 0           # make-before-break replacements
        self.silence_timeouts = 0
        self.messages = 0            # data frames received
        self.malformed = 0
        self.duplicates = 0          # dropped during rotation overlap
        self.unused = 0              # well-formed but not needed (depth, bookTicker, other symbols)
        self.last_error = ""
