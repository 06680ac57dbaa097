"""One WebSocket to the exchange, read by its own greenlet, and the feed's counters."""
from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable

import gevent
import gevent.event
import websocket

from pricefeed.logs import short_reason

CLOSE_GRACE_SECONDS = 1.0
DEFAULT_MAX_FRAME_BYTES = 1 << 20
_REQUEST_IDS = itertools.count(1)


class FrameTooLarge(websocket.WebSocketException):
    """The server announced a frame (or message) longer than we read."""


def cap_frame_size(ws: websocket.WebSocket, max_bytes: int) -> None:
    """Refuse, from its header, any frame or fragmented message over `max_bytes`.

    websocket-client reads a frame's whole payload into memory before returning it;
    checking the announced length first means a 12 MB frame costs us nothing.
    """
    frame_buffer = ws.frame_buffer
    read_length = frame_buffer.recv_length

    def recv_length() -> None:
        read_length()
        if frame_buffer.length is not None and frame_buffer.length > max_bytes:
            raise FrameTooLarge(f"frame of {frame_buffer.length} bytes announced (cap {max_bytes})")
    frame_buffer.recv_length = recv_length  # type: ignore[method-assign]  # this one connection's reader

    continuation = ws.cont_frame
    add = continuation.add

    def add_checked(frame) -> None:
        held = len(continuation.cont_data[1]) if continuation.cont_data else 0
        if held + len(frame.data) > max_bytes:
            raise FrameTooLarge(f"fragmented message over {max_bytes} bytes")
        add(frame)
    continuation.add = add_checked  # type: ignore[method-assign]  # this one connection's reader


class UpstreamConnection:
    """One WebSocket to the exchange and the greenlet that reads it."""

    def __init__(self, ws: websocket.WebSocket, number: int, simulated: bool,
                 on_data: Callable[[UpstreamConnection, bytes, bool], None],
                 on_end: Callable[[UpstreamConnection], None],
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
        # Set when this connection must be replaced though it is still open (e.g. a frame
        # over the cap left it unreadable): the feed switches make-before-break.
        self.replace_reason = ""
        self.last_reply_at: float | None = None   # a control request answered
        self.confirmed_at: float | None = None    # first data or control reply: it works
        self.probe_sent_at: float | None = None   # a LIST_SUBSCRIPTIONS waiting for its answer
        self._probe_ids: set[int] = set()
        self._parked = gevent.event.Event()
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
                    if self.confirmed_at is None:
                        self.confirmed_at = now
                    self._on_data(self, frame.data, opcode == websocket.ABNF.OPCODE_BINARY)
                elif opcode == websocket.ABNF.OPCODE_PING:
                    self.pings += 1  # websocket-client has already sent the one pong
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    self.close_code = _close_code(frame.data)
                    self.end_reason = f"closed by server ({self.close_code})"
                    return
        except FrameTooLarge as exc:
            # Mid-frame, nothing more can be read from this socket; but it stays open until
            # the replacement is confirmed, so clients see no gap in the mode.
            self.replace_reason = str(exc)
            self._on_end(self)
            try:
                self._parked.wait()
            except gevent.GreenletExit:
                pass
            self.end_reason = self.end_reason or f"replaced: {exc}"
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

    @property
    def last_heard_at(self) -> float:
        """When the server last proved this connection current: data, or a control reply."""
        reply = self.last_reply_at
        return self.last_data_at if reply is None or reply < self.last_data_at else reply

    def send_probe(self) -> bool:
        """Send one LIST_SUBSCRIPTIONS (one message: far inside Binance's 5 per second)."""
        request_id = next(_REQUEST_IDS)
        try:
            self.ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id}))
        except Exception:  # noqa: BLE001 - a dead socket shows as the unanswered probe
            return False
        self._probe_ids.add(request_id)
        self.probe_sent_at = self._clock()
        return True

    def reply_received(self, request_id: object) -> None:
        """A control reply arrived: the server reads and answers this connection."""
        now = self._clock()
        self.last_reply_at = now
        if self.confirmed_at is None:
            self.confirmed_at = now
        if isinstance(request_id, int) and request_id in self._probe_ids:
            self._probe_ids.clear()
            self.probe_sent_at = None

    def close(self, reason: str) -> None:
        """Close politely, then for sure: a server that never answers the close cannot hold us."""
        if self.ended:
            return
        self.end_reason = reason
        try:
            self.ws.send_close(websocket.STATUS_NORMAL)
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass
        self._parked.set()
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
        self.silence_timeouts = 0    # connections replaced for an unanswered probe after a silence
        self.probes = 0              # LIST_SUBSCRIPTIONS sent to a quiet connection
        self.probes_answered = 0
        self.oversized_frames = 0    # frames over the cap: the connection was replaced
        self.messages = 0            # data frames received
        self.malformed = 0
        self.rejected: Counter[str] = Counter()   # malformed frames and events, by reason
        self.unused = 0              # well-formed but not needed (depth, bookTicker, other symbols)
        self.last_error = ""
