"""Faults a test can inject through `POST /_sim/fault`, and the state they leave.

Connection-wide actions (drop, close, malformed, shutdown, hostile) are carried
out at once by the exchange on every open connection, or with `"stream": <name>`
only on the connections subscribed to that stream (one connection of a client's
set); timed faults (silence,
quiet, stall, ignore_pongs, refuse, rest) stay active here until they expire or
are cleared. What the timed silences keep and stop:

    quiet    no market data; pings and control replies go on (an illiquid market)
    silence  no market data and no control replies; pings go on (a stuck stream)
    stall    nothing at all: no data, no replies, no pings (a dead peer behind open TCP)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from .hostile import HOSTILE_KINDS
from .streams import encode_json

FAULTS = ("drop", "silence", "quiet", "stall", "ignore_pongs", "malformed", "refuse", "close", "shutdown",
          "hostile", "rest", "block", "clear")
_FIELDS = {
    "drop": {"stream"}, "shutdown": {"close", "stream"}, "clear": set(), "hostile": {"kind", "stream"},
    "silence": {"duration"}, "quiet": {"duration"}, "stall": {"duration"}, "ignore_pongs": {"duration"},
    "malformed": {"count", "stream"},
    "refuse": {"status", "count", "duration", "retry_after"},
    "close": {"code", "reason", "stream"},
    "rest": {"status", "duration", "retry_after"},
    # A region block (451, binance.com from the US) or the firewall (403): every handshake AND every
    # REST request refused, until cleared or `duration` passes.
    "block": {"status", "duration"},
}
_NEEDS_DURATION = ("silence", "quiet", "stall", "ignore_pongs", "rest")
MAX_DURATION = 3600.0
MAX_MALFORMED = 1000


class FaultError(ValueError):
    """A fault request the simulator cannot honour (unknown fault or bad field)."""


@dataclass(frozen=True)
class Fault:
    """One validated fault request."""

    name: str
    duration: float | None = None
    count: int | None = None
    status: int | None = None
    retry_after: int = 1
    code: int = 1000
    reason: str = ""
    close: bool = True        # shutdown: close after the grace (False: announce only)
    kind: str = ""            # hostile: which frame
    stream: str = ""          # connection-wide faults: only connections subscribed to it ("": all)


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise FaultError(f"{key} must be a number between {low} and {high}")
    return value


def _integer(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = _number(body, key, low, high)
    if value is not None and value != int(value):
        raise FaultError(f"{key} must be an integer")
    return None if value is None else int(value)


def _is_valid_close_code(code: int) -> bool:
    return (1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999)


def parse_fault(body: Any) -> Fault:
    """Validate a `POST /_sim/fault` body."""
    if not isinstance(body, dict):
        raise FaultError("body must be a JSON object like {\"fault\": \"drop\"}")
    name = body.get("fault")
    if name not in FAULTS:
        raise FaultError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    unknown = set(body) - {"fault"} - _FIELDS[name]
    if unknown:
        raise FaultError(f"fault {name!r} takes no field(s) {', '.join(sorted(unknown))}")
    duration = _number(body, "duration", 0.001, MAX_DURATION)
    if name in _NEEDS_DURATION and duration is None:
        raise FaultError(f"fault {name!r} needs a duration in seconds")
    count = _integer(body, "count", 1, MAX_MALFORMED)
    status = _integer(body, "status", 400, 599)
    retry_after = _integer(body, "retry_after", 0, 86400)
    code = _integer(body, "code", 1000, 4999)
    reason = body.get("reason", "")
    if name in ("refuse", "rest") and status is None:
        status = 429
    if name == "block":
        status = 451 if status is None else status
        if status not in (451, 403):
            raise FaultError("block takes status 451 (region not served) or 403 (firewall)")
    if name == "refuse" and count is None and duration is None:
        count = 1
    if name == "malformed" and count is None:
        count = len(_MALFORMED_KINDS)
    if code is not None and not _is_valid_close_code(code):
        raise FaultError(f"{code} is not a close code a server may send")
    if not isinstance(reason, str) or len(reason.encode()) > 123:
        raise FaultError("reason must be a string of at most 123 bytes")
    close = body.get("close", True)
    if not isinstance(close, bool):
        raise FaultError("close must be true or false")
    kind = body.get("kind", "")
    if name == "hostile" and kind not in HOSTILE_KINDS:
        raise FaultError(f"hostile needs a kind, one of: {', '.join(HOSTILE_KINDS)}")
    stream = body.get("stream", "")
    if not isinstance(stream, str) or len(stream) > 200:
        raise FaultError("stream must be a stream name like btcusdt@aggTrade")
    return Fault(name, duration, count, status,
                 1 if retry_after is None else retry_after,
                 1000 if code is None else code, reason, close, kind, stream)


def status_line(status: int) -> str:
    """`429` -> `"429 Too Many Requests"`."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


@dataclass
class _Refusal:
    status: int
    retry_after: int
    remaining: int | None     # handshakes still to refuse, or None when timed
    until: float | None


@dataclass
class _RestFailure:
    status: int
    retry_after: int
    until: float


class FaultState:
    """The timed faults currently in force."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._silence_until = 0.0
        self._quiet_until = 0.0
        self._stall_until = 0.0
        self._ignore_pongs_until = 0.0
        self._refusal: _Refusal | None = None
        self._rest_failure: _RestFailure | None = None
        self._block: tuple[int, float | None] | None = None   # (status, until or None: until cleared)

    def apply(self, fault: Fault) -> None:
        """Start a timed fault (other faults have no lasting state)."""
        now = time.monotonic()
        until = now + fault.duration if fault.duration is not None else None
        if fault.name in _NEEDS_DURATION:
            assert until is not None, fault     # parse_fault refuses these without a duration
            self._apply_timed(fault, until)
        elif fault.name in ("refuse", "block"):
            assert fault.status is not None, fault      # parse_fault gives them a default
            if fault.name == "refuse":
                self._refusal = _Refusal(fault.status, fault.retry_after, fault.count, until)
            else:
                self._block = (fault.status, until)
        elif fault.name == "clear":
            self.clear()

    def _apply_timed(self, fault: Fault, until: float) -> None:
        if fault.name == "silence":
            self._silence_until = until
        elif fault.name == "quiet":
            self._quiet_until = until
        elif fault.name == "stall":
            self._stall_until = until
        elif fault.name == "ignore_pongs":
            self._ignore_pongs_until = until
        elif fault.name == "rest":
            assert fault.status is not None, fault      # parse_fault gives it a default
            self._rest_failure = _RestFailure(fault.status, fault.retry_after, until)

    @property
    def silenced(self) -> bool:
        """No market data reaches any client (quiet, silence and stall all stop it)."""
        now = time.monotonic()
        return now < self._silence_until or now < self._quiet_until or now < self._stall_until

    @property
    def replies_withheld(self) -> bool:
        """Control requests go unanswered (silence and stall)."""
        now = time.monotonic()
        return now < self._silence_until or now < self._stall_until

    @property
    def stalled(self) -> bool:
        """Not even pings are sent."""
        return time.monotonic() < self._stall_until

    @property
    def ignoring_pongs(self) -> bool:
        return time.monotonic() < self._ignore_pongs_until

    def blocked(self) -> int | None:
        """451 or 403 while a block is in force: every handshake and REST request gets it."""
        block = self._block
        if block is not None and block[1] is not None and time.monotonic() >= block[1]:
            self._block = block = None
        return block[0] if block is not None else None

    def take_refusal(self) -> tuple[int, int] | None:
        """`(status, retry_after)` if this handshake is to be refused; counts it."""
        refusal = self._refusal
        if refusal is None:
            return None
        if refusal.until is not None and time.monotonic() >= refusal.until:
            self._refusal = None
            return None
        if refusal.remaining is not None:
            refusal.remaining -= 1
            if refusal.remaining <= 0:
                self._refusal = None
        return refusal.status, refusal.retry_after

    def rest_failure(self) -> tuple[int, int] | None:
        """`(status, retry_after)` while REST requests are to fail."""
        failure = self._rest_failure
        if failure is None or time.monotonic() >= failure.until:
            self._rest_failure = None
            return None
        return failure.status, failure.retry_after

    def describe(self) -> dict[str, Any]:
        """The active faults, with seconds left, for `GET /_sim/fault`."""
        now = time.monotonic()
        active: dict[str, Any] = {}
        for name, until in (("silence", self._silence_until), ("quiet", self._quiet_until),
                            ("stall", self._stall_until)):
            if now < until:
                active[name] = {"remaining": round(until - now, 3)}
        if now < self._ignore_pongs_until:
            active["ignore_pongs"] = {"remaining": round(self._ignore_pongs_until - now, 3)}
        refusal = self._refusal
        if refusal is not None and (refusal.until is None or now < refusal.until):
            active["refuse"] = {"status": refusal.status, "retry_after": refusal.retry_after,
                                "count": refusal.remaining,
                                "remaining": None if refusal.until is None
                                else round(refusal.until - now, 3)}
        block = self._block if self.blocked() is not None else None     # blocked() drops a lapsed one
        if block is not None:
            active["block"] = {"status": block[0], "remaining": None if block[1] is None
                               else round(block[1] - now, 3)}
        failure = self._rest_failure
        if failure is not None and now < failure.until:
            active["rest"] = {"status": failure.status, "retry_after": failure.retry_after,
                              "remaining": round(failure.until - now, 3)}
        return active


# -- malformed frames --------------------------------------------------------------

_MALFORMED_KINDS = ("invalid_json", "binary_garbage", "number_price", "missing_fields",
                    "unknown_event", "empty_object")


def malformed_frames(count: int, stream: str, combined: bool, event_time: int) -> list[str | bytes]:
    """`count` bad frames cycling through every kind a client must survive.

    Text frames are `str`, binary frames `bytes`. The bad payloads sit in the
    client's own stream (wrapped when it reads combined streams) so a client
    that doesn't validate would take them for real data.
    """
    symbol = stream.partition("@")[0].upper() or "BTCUSDT"

    def wrapped(data: dict[str, Any]) -> str:
        return encode_json({"stream": stream, "data": data} if combined else data)

    frames: list[str | bytes] = []
    for index in range(count):
        kind = _MALFORMED_KINDS[index % len(_MALFORMED_KINDS)]
        if kind == "invalid_json":
            frames.append('{"stream":"' + stream + '","data":{"e":"aggTrade","p":"1')
        elif kind == "binary_garbage":
            frames.append(b"\x00\xff\xfe\x80garbage\x01" + bytes([index % 256]))
        elif kind == "number_price":
            frames.append(wrapped({"e": "aggTrade", "E": event_time, "s": symbol, "a": 1,
                                   "p": 12345.678, "q": 1.5, "f": 1, "l": 1,
                                   "T": event_time, "m": True, "M": True}))
        elif kind == "missing_fields":
            frames.append(wrapped({"e": "aggTrade", "E": event_time, "s": symbol}))
        elif kind == "unknown_event":
            frames.append(wrapped({"e": "mysteryEvent", "E": event_time, "s": symbol,
                                   "p": "99999.00000000"}))
        else:
            frames.append("{}")
    return frames
