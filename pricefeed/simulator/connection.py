"""One WebSocket client of the simulated exchange.

Per connection: its subscriptions and framing (raw or combined, ms or µs),
a bounded outbox drained by its own sender greenlet (a slow reader loses its
oldest data, never stalls the market), a keeper greenlet for server pings,
the pong deadline and the maximum lifetime, and Binance's limit of 5 incoming
messages per second. Every frame is written under one lock, so a ping or a
reply never lands in the middle of a data frame.
"""
from __future__ import annotations

import socket
import struct
import time
from collections import deque
from typing import Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from geventwebsocket.exceptions import ProtocolError
from geventwebsocket.websocket import WebSocket

from .control import INVALID_REQUEST, ControlError, ControlRequest, parse_request, result_text
from .faults import FaultState, malformed_frames
from .handler import SimulatorWebSocket
from .hostile import hostile_frame
from .options import SimulatorOptions
from .stats import Stats
from .streams import MarketEvent, stream_key

# How long a server-initiated close waits for the client's close frame.
CLOSE_HANDSHAKE_TIMEOUT = 2.0
# How long a ping or reply may wait behind a data frame a slow client isn't reading.
CONTROL_WRITE_TIMEOUT = 1.0
RATE_LIMIT_REASON = "Too many requests"
SHUTDOWN_CLOSE = (1001, "Server shutting down")

_DATA, _MALFORMED, _NOTICE = "data", "malformed", "notice"


def _ms() -> int:
    return time.time_ns() // 1_000_000


class Connection:
    """State and greenlets of one client, from handshake to close."""

    def __init__(self, websocket: SimulatorWebSocket, streams: list[str], combined: bool,
                 microseconds: bool, options: SimulatorOptions, stats: Stats,
                 faults: FaultState, target_length: int = 0) -> None:
        self.combined = combined
        self.target_length = target_length   # of the handshake's request target, as sent
        self.microseconds = microseconds
        self._ws = websocket
        self._options = options
        self._stats = stats
        self._faults = faults
        self._subscriptions: dict[str, str] = {}   # match key -> name as subscribed
        for name in streams:
            self._subscriptions.setdefault(stream_key(name), name)
        self._outbox: deque[tuple[str, str | bytes]] = deque()
        self._outbox_ready = Event()
        self._write_lock = Semaphore()
        self._outstanding_pings: dict[bytes, float] = {}
        self._incoming: deque[float] = deque()
        self._opened_at = time.monotonic()
        self._closing = False
        self._greenlets: list[gevent.Greenlet] = []

    # -- lifecycle -------------------------------------------------------------

    def serve(self) -> None:
        """Run the connection until it closes (called in the handler's greenlet)."""
        self._ws.listener = self
        self._greenlets = [gevent.spawn(self._send_outbox), gevent.spawn(self._keep)]
        try:
            self._read_until_closed()
        finally:
            self._closing = True
            gevent.killall(self._greenlets, block=False)
            # Nothing more is written: stop gevent-websocket from sending its own close.
            self._ws.closed = True

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame, then wait (briefly) for the client's."""
        if self._closing:
            return
        self._closing = True
        if code == 1008:
            self._stats.closes_1008 += 1
        frame = struct.pack("!H", code) + reason.encode("utf-8")
        self._write(frame, WebSocket.OPCODE_CLOSE, timeout=CONTROL_WRITE_TIMEOUT, force=True)
        self._greenlets.append(gevent.spawn_later(CLOSE_HANDSHAKE_TIMEOUT, self.drop))

    def drop(self) -> None:
        """End the TCP connection at once, without a close frame."""
        self._closing = True
        sock = self._socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass   # already gone

    def describe(self) -> dict[str, Any]:
        """This connection's state, for `GET /_sim/connections`."""
        return {"combined": self.combined, "microseconds": self.microseconds,
                "streams": list(self._subscriptions.values()), "stream_count": len(self._subscriptions),
                "target_length": self.target_length, "outbox": len(self._outbox),
                "outstanding_pings": len(self._outstanding_pings), "closing": self._closing,
                "age": round(time.monotonic() - self._opened_at, 3)}

    def subscribes(self, stream: str) -> bool:
        return stream_key(stream) in self._subscriptions

    def limits(self) -> dict[str, int]:
        """What the exchange's per-connection caps measure, for `GET /_sim/stats`."""
        return {"streams": len(self._subscriptions), "target_length": self.target_length}

    def _socket(self) -> Any:
        handler = self._ws.handler
        return getattr(handler, "socket", None) if handler is not None else None

    # -- outgoing ------------------------------------------------------------------

    def offer(self, event: MarketEvent) -> None:
        """Queue a market event if this client subscribed to its stream."""
        if event.key in self._subscriptions:
            self._enqueue(_DATA, event.text(self.combined, self.microseconds))

    def send_malformed(self, count: int) -> None:
        stream = next(iter(self._subscriptions.values()), "btcusdt@aggTrade")
        for frame in malformed_frames(count, stream, self.combined, _ms()):
            self._enqueue(_MALFORMED, frame)

    def announce_shutdown(self, grace: float, close: bool = True) -> None:
        """Send `serverShutdown`, then close after `grace` seconds (or, without `close`, never:
        a server that announces and leaves the closing to the client)."""
        notice = MarketEvent("!serverShutdown", {"e": "serverShutdown", "E": _ms()})
        self._enqueue(_NOTICE, notice.text(self.combined, self.microseconds))
        if close:
            self._greenlets.append(gevent.spawn_later(grace, self.close, *SHUTDOWN_CLOSE))

    def send_hostile(self, kind: str, last_trades: dict[str, dict[str, Any]]) -> None:
        """One hostile frame on this client's first trade stream, dressed as its last real trade."""
        streams = list(self._subscriptions.values())
        stream = next((s for s in streams if s.endswith("@aggTrade")), streams[0] if streams else "btcusdt@aggTrade")
        last = last_trades.get(stream.partition("@")[0].upper(), {})
        frame = hostile_frame(kind, stream, self.combined, last.get("price") or "1.00", _ms(),
                              last.get("trade_id") or 1)
        self._enqueue(_MALFORMED, frame)

    def _enqueue(self, kind: str, frame: str | bytes) -> None:
        if self._closing:
            return
        if len(self._outbox) >= self._options.outbox_limit:
            self._outbox.popleft()
            self._stats.outbox_dropped += 1
        self._outbox.append((kind, frame))
        self._outbox_ready.set()

    def _send_outbox(self) -> None:
        while not self._closing:
            if not self._outbox:
                self._outbox_ready.clear()
                self._outbox_ready.wait()
                continue
            kind, frame = self._outbox.popleft()
            opcode = WebSocket.OPCODE_BINARY if isinstance(frame, bytes) else WebSocket.OPCODE_TEXT
            if not self._write(frame, opcode):
                return
            if kind == _DATA:
                self._stats.messages_sent += 1
            elif kind == _MALFORMED:
                self._stats.malformed_sent += 1
            else:
                self._stats.shutdown_notices_sent += 1

    def _write(self, payload: str | bytes, opcode: int, timeout: float | None = None,
               force: bool = False) -> bool:
        """Write one frame under the connection's lock; False if it wasn't written."""
        if self._closing and not force:
            return False
        if not self._write_lock.acquire(timeout=timeout):
            return False
        try:
            self._ws.send_frame(payload, opcode)
            return True
        except Exception:   # noqa: BLE001 - any write failure means the peer is gone
            self.drop()
            return False
        finally:
            self._write_lock.release()

    def _reply(self, text: str) -> None:
        if self._faults.replies_withheld:
            self._stats.replies_withheld += 1
            return
        if self._write(text, WebSocket.OPCODE_TEXT, timeout=CONTROL_WRITE_TIMEOUT):
            self._stats.responses_sent += 1

    # -- pings, pong deadline, lifetime ---------------------------------------------

    def _keep(self) -> None:
        options = self._options
        next_ping = self._opened_at + options.ping_interval
        expires = self._opened_at + options.max_lifetime
        while not self._closing:
            now = time.monotonic()
            oldest = min(self._outstanding_pings.values(), default=None)
            if oldest is not None and now >= oldest + options.pong_timeout:
                self._stats.pong_timeouts += 1
                self.drop()
                return
            if now >= expires:
                self._stats.lifetime_closes += 1
                self.close(1000)
                return
            if now >= next_ping and self._faults.stalled:
                next_ping = now + options.ping_interval   # a stalled peer sends nothing at all
            elif now >= next_ping:
                self._ping(now)
                next_ping = max(next_ping + options.ping_interval, now)
                oldest = min(self._outstanding_pings.values())
            deadlines = [next_ping, expires]
            if oldest is not None:
                deadlines.append(oldest + options.pong_timeout)
            gevent.sleep(max(0.005, min(deadlines) - time.monotonic()))

    def _ping(self, now: float) -> None:
        payload = str(_ms()).encode()
        while payload in self._outstanding_pings:
            payload += b"+"
        # Counted as outstanding even if a stuck client couldn't be sent it:
        # such a client can't answer, and the pong deadline then drops it.
        self._outstanding_pings[payload] = now
        # gevent-websocket encodes ping payloads from text (bytes would be str()-ed).
        if self._write(payload.decode(), WebSocket.OPCODE_PING, timeout=CONTROL_WRITE_TIMEOUT):
            self._stats.pings_sent += 1

    # -- incoming --------------------------------------------------------------------

    def _read_until_closed(self) -> None:
        while True:
            try:
                message = self._ws.read_message()
            except ProtocolError:
                self.close(1002)
                message = None
            except UnicodeError:
                self.close(1007)
                message = None
            except Exception:   # noqa: BLE001 - EOF, reset, shut down by drop()
                return
            if message is None:
                if self._closing:
                    return   # our close handshake completed, or the client closed
                continue
            if self._closing or not self._count_incoming():
                continue
            if isinstance(message, str):
                self._handle_request(message)
            # Binary frames mean nothing to Binance; they only count against the limit.

    def _count_incoming(self) -> bool:
        """Record one incoming message; close with 1008 past the limit. True if within it."""
        self._stats.messages_received += 1
        now = time.monotonic()
        self._incoming.append(now)
        while self._incoming and self._incoming[0] <= now - 1.0:
            self._incoming.popleft()
        if len(self._incoming) > self._options.incoming_per_second:
            self._stats.rate_limit_closes += 1
            self.close(1008, RATE_LIMIT_REASON)
            return False
        return True

    def on_ping(self, payload: bytes) -> None:
        if self._closing or not self._count_incoming():
            return
        self._write(payload, WebSocket.OPCODE_PONG, timeout=CONTROL_WRITE_TIMEOUT)

    def on_pong(self, payload: bytes) -> None:
        if self._closing or not self._count_incoming():
            return
        sent_at = self._outstanding_pings.get(payload)
        counted = sent_at is None or sent_at >= self._stats.since
        if counted:
            self._stats.pongs_received += 1
        if self._faults.ignoring_pongs:
            self._stats.pongs_ignored += 1
            return
        if sent_at is None:
            return   # unsolicited: allowed, but it proves nothing
        if counted:
            self._stats.pongs_matched += 1
        # Answering a ping also vouches for every earlier one.
        for outstanding, at in list(self._outstanding_pings.items()):
            if at <= sent_at:
                del self._outstanding_pings[outstanding]

    def on_close_frame(self, code: int) -> None:
        if not self._closing:
            self._closing = True
            echo = b"" if code == 1005 else struct.pack("!H", code)
            self._write(echo, WebSocket.OPCODE_CLOSE, timeout=CONTROL_WRITE_TIMEOUT, force=True)

    # -- control requests ----------------------------------------------------------------

    def _handle_request(self, text: str) -> None:
        request = parse_request(text)
        if isinstance(request, ControlError):
            self._reply(request.text(self._options.nested_errors))
            return
        self._reply(self._execute(request))

    def _execute(self, request: ControlRequest) -> str:
        method, params, request_id = request.method, request.params, request.id
        if method == "SUBSCRIBE":
            new = {stream_key(name): name for name in params}
            if len(self._subscriptions.keys() | new.keys()) > self._options.max_streams:
                self._stats.streams_refused += 1
                return ControlError(INVALID_REQUEST, "Invalid request: too many streams "
                                    f"(at most {self._options.max_streams})", request_id).text()
            for key, name in new.items():
                self._subscriptions.setdefault(key, name)
            return result_text(None, request_id)
        if method == "UNSUBSCRIBE":
            for name in params:
                self._subscriptions.pop(stream_key(name), None)
            return result_text(None, request_id)
        if method == "LIST_SUBSCRIPTIONS":
            return result_text(list(self._subscriptions.values()), request_id)
        if method == "SET_PROPERTY":
            self.combined = params[1]
            return result_text(None, request_id)
        return result_text(self.combined, request_id)   # GET_PROPERTY combined
