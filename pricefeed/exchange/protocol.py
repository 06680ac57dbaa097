"""The Binance Spot market-stream protocol: stream names, URLs, and frame parsing.

Pure functions, no I/O, so every rule can be checked against captured traffic.
Prices stay the exact decimal strings the exchange sent; a value that breaks a
rule of `pricefeed.validation` (price shape, ASCII symbol, event time within the
clock window, 63-bit ids) makes its event malformed, never coerced. The parser
raises only `MalformedFrame`, whose `reason` is counted in /health.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pricefeed.validation as validation
from pricefeed.pairs import Pair
from pricefeed.validation import Rejected

# Binance's documented cap; exchange/stream_plan.py splits the streams over connections.
MAX_STREAMS_PER_CONNECTION = 1024

_MAX_INTERVAL_LENGTH = 8
# timeUnit=MICROSECOND turns millisecond timestamps (13 digits) into 16-digit ones.
_MICROSECOND_THRESHOLD = 10**14


class MalformedFrame(Rejected):
    """A frame (or one event of it) that breaks the protocol or a price rule. Counted by
    `reason`, logged (rate-limited) and skipped."""


@dataclass(frozen=True, slots=True)
class Trade:
    """A trade or aggTrade: the source of the last price."""

    symbol: str
    price: str
    event_time: int   # ms
    trade_id: int     # aggTrade `a` or trade `t`: increases per symbol
    kind: str         # "aggTrade" or "trade"


@dataclass(frozen=True, slots=True)
class Ticker:
    """A 24hrMiniTicker or 24hrTicker: carries the 24 h open for the change figure."""

    symbol: str
    close: str
    open: str
    event_time: int


@dataclass(frozen=True, slots=True)
class BookTicker:
    symbol: str
    bid: str
    ask: str
    update_id: int


@dataclass(frozen=True, slots=True)
class Kline:
    symbol: str
    interval: str
    open: str
    close: str
    event_time: int
    closed: bool


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """The server will close this connection soon: reconnect at once."""

    event_time: int


@dataclass(frozen=True, slots=True)
class ControlReply:
    """The answer to SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS, or a control error."""

    request_id: Any
    result: Any = None
    error_code: int | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class Unused:
    """A well-formed message of a type this service does not use (depth, ...)."""

    kind: str


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    """One bad event inside an array frame (`!miniTicker@arr`): the others still count."""

    reason: str
    detail: str


MarketMessage = Trade | Ticker | BookTicker | Kline | ServerShutdown | ControlReply | Unused | RejectedEvent


def stream_names(pairs: Iterable[Pair]) -> list[str]:
    """aggTrade gives the price, miniTicker the 24 h open for the change figure."""
    names = []
    for pair in pairs:
        names.append(f"{pair.stream_symbol}@aggTrade")
        names.append(f"{pair.stream_symbol}@miniTicker")
    return names


def parse_frame(text: str | bytes, *, max_skew_ms: int | None = None,
                now_ms: int | None = None) -> list[MarketMessage]:
    """Parse one text frame into messages (an `!miniTicker@arr` frame holds many).

    With `max_skew_ms` (the feed always passes it), event times must lie within it of
    `now_ms` (default: the local clock); without, any 63-bit time passes (captures).
    Raises MalformedFrame for a frame that breaks the protocol; a bad event inside an
    array becomes a `RejectedEvent` beside the good ones.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedFrame("not_utf8", "frame is not UTF-8") from None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise MalformedFrame("not_json", "frame is not JSON") from None
    context = _Context(max_skew_ms, validation.now_ms() if now_ms is None else now_ms)
    if max_skew_ms is None:
        context = _Context(None, 0)
    if isinstance(document, dict) and "stream" in document and "data" in document:
        return _parse_payload(document["data"], document["stream"], context)
    return _parse_payload(document, None, context)


@dataclass(frozen=True, slots=True)
class _Context:
    max_skew_ms: int | None
    now_ms: int


def _parse_payload(payload: Any, stream: Any, context: _Context) -> list[MarketMessage]:
    if stream is not None and not isinstance(stream, str):
        raise MalformedFrame("bad_shape", "stream name is not a string")
    if isinstance(payload, list):
        messages: list[MarketMessage] = []
        for item in payload:
            if not isinstance(item, dict):
                raise MalformedFrame("bad_shape", f"array item is a {type(item).__name__}, not an object")
            try:
                messages.append(_parse_event(item, stream, context))
            except MalformedFrame as exc:
                messages.append(RejectedEvent(exc.reason, exc.detail))
        return messages
    return [_parse_event(payload, stream, context)]


def _parse_event(event: Any, stream: str | None, context: _Context) -> MarketMessage:
    try:
        return _parse_checked_event(event, stream, context)
    except MalformedFrame:
        raise
    except Rejected as exc:
        raise MalformedFrame(exc.reason, exc.detail) from None


def _parse_checked_event(event: Any, stream: str | None, context: _Context) -> MarketMessage:
    if not isinstance(event, dict):
        raise MalformedFrame("bad_shape", f"event is a {type(event).__name__}, not an object")
    kind = event.get("e")
    if kind in ("aggTrade", "trade"):
        id_field = "a" if kind == "aggTrade" else "t"
        return Trade(_symbol(event), _decimal(event, "p"), _time(event, "E", context),
                     _integer(event, id_field), kind)
    if kind in ("24hrMiniTicker", "24hrTicker"):
        return Ticker(_symbol(event), _decimal(event, "c"), _decimal(event, "o"), _time(event, "E", context))
    if kind == "kline":
        k = event.get("k")
        if not isinstance(k, dict):
            raise MalformedFrame("bad_shape", "kline without k object")
        interval = k.get("i")
        if not isinstance(interval, str) or not interval.isascii() or not 0 < len(interval) <= _MAX_INTERVAL_LENGTH:
            raise MalformedFrame("bad_shape", "kline interval is not a short string")
        return Kline(_symbol(event), interval, _decimal(k, "o"), _decimal(k, "c"), _time(event, "E", context),
                     bool(k.get("x")))
    if kind == "serverShutdown":
        return ServerShutdown(_time(event, "E", context))
    if kind is None:
        return _parse_untyped(event, stream)
    if not isinstance(kind, str):
        raise MalformedFrame("bad_shape", "event type is not a string")
    return Unused(kind[:40])


def _parse_untyped(event: dict, stream: str | None) -> MarketMessage:
    # Control replies and Spot bookTicker carry no "e".
    if "id" in event and ("result" in event or "code" in event or isinstance(event.get("error"), dict)):
        # Errors come flat, {"code":2,"msg":..,"id":1}, or nested, {"error":{"code":2,"msg":..},"id":1}.
        error = event["error"] if isinstance(event.get("error"), dict) else event
        if "code" in error:
            code = error["code"]
            return ControlReply(event["id"], error_code=code if isinstance(code, int) else None,
                                error_message=str(error.get("msg", ""))[:200])
        if "result" not in event:
            raise MalformedFrame("bad_shape", "control error without a code")
        return ControlReply(event["id"], result=event["result"])
    if "u" in event and "b" in event and "a" in event and "s" in event:
        return BookTicker(_symbol(event), _decimal(event, "b"), _decimal(event, "a"), _integer(event, "u"))
    if stream and "@" in stream:
        return Unused(stream.split("@", 1)[1][:40])
    raise MalformedFrame("bad_shape", "object without an event type")


def _symbol(event: dict) -> str:
    return validation.symbol(event.get("s"))


def _decimal(event: dict, field: str) -> str:
    return validation.price(event.get(field), field)


def _integer(event: dict, field: str) -> int:
    if field not in event:
        raise MalformedFrame("missing_field", f"`{field}` is missing")
    return validation.identifier(event.get(field), field)


def _time(event: dict, field: str, context: _Context) -> int:
    value = event.get(field)
    if value is None:
        raise MalformedFrame("missing_field", f"`{field}` is missing")
    if isinstance(value, int) and not isinstance(value, bool) and value >= _MICROSECOND_THRESHOLD:
        value //= 1000
    if context.max_skew_ms is None:
        return validation.identifier(value, field)
    return validation.event_time(value, context.max_skew_ms, context.now_ms, field)
