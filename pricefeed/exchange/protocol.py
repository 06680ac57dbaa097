"""The Binance Spot market-stream protocol: stream names, URLs, and frame parsing.

Pure functions, no I/O, so every rule can be checked against captured traffic.
Prices stay the exact decimal strings the exchange sent; a frame whose price is
not a decimal string is malformed, never coerced.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Union
from urllib.parse import urlsplit

from pricefeed.pairs import Pair

MAX_STREAMS_PER_CONNECTION = 1024

_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# timeUnit=MICROSECOND turns millisecond timestamps (13 digits) into 16-digit ones.
_MICROSECOND_THRESHOLD = 10**14


class MalformedFrame(ValueError):
    """A frame that does not follow the protocol. Counted, logged and skipped."""


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


MarketMessage = Union[Trade, Ticker, BookTicker, Kline, ServerShutdown, ControlReply, Unused]


def stream_names(pairs: Iterable[Pair]) -> list[str]:
    """aggTrade gives the price, miniTicker the 24 h open for the change figure."""
    names = []
    for pair in pairs:
        names.append(f"{pair.stream_symbol}@aggTrade")
        names.append(f"{pair.stream_symbol}@miniTicker")
    if len(names) > MAX_STREAMS_PER_CONNECTION:
        raise ValueError(f"{len(names)} streams exceed Binance's {MAX_STREAMS_PER_CONNECTION} per connection")
    return names


def combined_stream_url(base_url: str, pairs: Iterable[Pair]) -> str:
    """`<base>/stream?streams=a/b/c`. A base that already names /stream or /ws is trimmed to its root."""
    parts = urlsplit(base_url.rstrip("/"))
    path = parts.path
    for suffix in ("/stream", "/ws"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    root = parts._replace(path=path, query="", fragment="").geturl().rstrip("/")
    return f"{root}/stream?streams={'/'.join(stream_names(pairs))}"


def parse_frame(text: str | bytes) -> list[MarketMessage]:
    """Parse one text frame into messages (an `!miniTicker@arr` frame holds many).

    Raises MalformedFrame for anything that breaks the protocol.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedFrame("frame is not UTF-8") from None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise MalformedFrame("frame is not JSON") from None
    if isinstance(document, dict) and "stream" in document and "data" in document:
        return _parse_payload(document["data"], stream=document["stream"])
    return _parse_payload(document, stream=None)


def _parse_payload(payload: Any, stream: Any) -> list[MarketMessage]:
    if stream is not None and not isinstance(stream, str):
        raise MalformedFrame("stream name is not a string")
    if isinstance(payload, list):
        return [_parse_event(item, stream) for item in payload]
    return [_parse_event(payload, stream)]


def _parse_event(event: Any, stream: str | None) -> MarketMessage:
    if not isinstance(event, dict):
        raise MalformedFrame(f"event is a {type(event).__name__}, not an object")
    kind = event.get("e")
    if kind in ("aggTrade", "trade"):
        id_field = "a" if kind == "aggTrade" else "t"
        return Trade(_symbol(event), _decimal(event, "p"), _time(event, "E"), _integer(event, id_field), kind)
    if kind in ("24hrMiniTicker", "24hrTicker"):
        return Ticker(_symbol(event), _decimal(event, "c"), _decimal(event, "o"), _time(event, "E"))
    if kind == "kline":
        k = event.get("k")
        if not isinstance(k, dict):
            raise MalformedFrame("kline without k object")
        interval = k.get("i")
        if not isinstance(interval, str):
            raise MalformedFrame("kline interval is not a string")
        return Kline(_symbol(event), interval, _decimal(k, "o"), _decimal(k, "c"), _time(event, "E"),
                     bool(k.get("x")))
    if kind == "serverShutdown":
        return ServerShutdown(_time(event, "E"))
    if kind is None:
        return _parse_untyped(event, stream)
    if not isinstance(kind, str):
        raise MalformedFrame("event type is not a string")
    return Unused(kind)


def _parse_untyped(event: dict, stream: str | None) -> MarketMessage:
    # Control replies and Spot bookTicker carry no "e".
    if "id" in event and ("result" in event or "code" in event):
        if "code" in event:
            code = event["code"]
            return ControlReply(event["id"], error_code=code if isinstance(code, int) else None,
                                error_message=str(event.get("msg", "")))
        return ControlReply(event["id"], result=event["result"])
    if "u" in event and "b" in event and "a" in event and "s" in event:
        return BookTicker(_symbol(event), _decimal(event, "b"), _decimal(event, "a"), _integer(event, "u"))
    if stream and "@" in stream:
        return Unused(stream.split("@", 1)[1])
    raise MalformedFrame("object without an event type")


def _symbol(event: dict) -> str:
    symbol = event.get("s")
    if not isinstance(symbol, str) or not symbol or not symbol.isalnum():
        raise MalformedFrame("missing or invalid symbol `s`")
    return symbol.upper()


def _decimal(event: dict, field: str) -> str:
    value = event.get(field)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise MalformedFrame(f"`{field}` is not a decimal string: {str(value)[:40]!r}")
    return value


def _integer(event: dict, field: str) -> int:
    value = event.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedFrame(f"`{field}` is not an integer")
    return value


def _time(event: dict, field: str) -> int:
    value = _integer(event, field)
    return value // 1000 if value >= _MICROSECOND_THRESHOLD else value
