"""Stream names and market events, encoded the way each client asked for them.

A client reads either raw streams (`/ws/...`: the payload alone) or combined
streams (`/stream?...`: `{"stream":..,"data":..}`), with timestamps in
milliseconds or, with `timeUnit=MICROSECOND`, microseconds. One event is
encoded at most once per variant however many clients receive it.
"""
from __future__ import annotations

import json
from typing import Any

MAX_STREAM_NAME = 200

# Timestamp fields by position: Binance's own names, never a price.
_TOP_LEVEL_TIMES = ("E", "T", "O", "C")
_KLINE_TIMES = ("t", "T")


def stream_key(name: str) -> str:
    """The name used to match events to subscriptions.

    Binance spells stream names in lower case (`btcusdt@aggTrade` is the
    canonical form, `btcusdt@aggtrade` is also accepted), but a kline interval
    is case-sensitive: `1m` is a minute, `1M` a month.
    """
    symbol, at, kind = name.partition("@")
    if kind.lower().startswith("kline_"):
        kind = "kline_" + kind[len("kline_"):]
    else:
        kind = kind.lower()
    return symbol.lower() + at + kind


def is_valid_stream_name(name: object) -> bool:
    """A syntactically plausible stream (`<symbol>@<type>` or `!...@arr`).

    Unknown symbols are fine (they just never get data), like on Binance.
    """
    return (isinstance(name, str) and 0 < len(name) <= MAX_STREAM_NAME
            and "@" in name and not name.startswith("@")
            and not any(ch.isspace() or ch in '/"\\' for ch in name))


def encode_json(value: Any) -> str:
    """Compact JSON like the exchange's own frames."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def in_microseconds(payload: Any) -> Any:
    """A copy of `payload` with its millisecond timestamps scaled to microseconds."""
    if isinstance(payload, list):
        return [in_microseconds(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    converted = dict(payload)
    for field in _TOP_LEVEL_TIMES:
        if isinstance(converted.get(field), int) and not isinstance(converted[field], bool):
            converted[field] = converted[field] * 1000
    kline = converted.get("k")
    if isinstance(kline, dict):
        kline = dict(kline)
        for field in _KLINE_TIMES:
            if isinstance(kline.get(field), int):
                kline[field] = kline[field] * 1000
        converted["k"] = kline
    return converted


class MarketEvent:
    """One message of one stream, shared by every client subscribed to it."""

    __slots__ = ("stream", "key", "payload", "captured_text", "_texts")

    def __init__(self, stream: str, payload: Any, captured_text: str | None = None) -> None:
        self.stream = stream
        self.key = stream_key(stream)
        self.payload = payload
        # A replayed frame is sent byte for byte as captured when the client
        # reads it in the form it was captured in (combined, milliseconds).
        self.captured_text = captured_text
        self._texts: dict[tuple[bool, bool], str] = {}

    @property
    def symbol(self) -> str | None:
        """The event's symbol (`s`), when the payload is a single object."""
        if isinstance(self.payload, dict):
            symbol = self.payload.get("s")
            return symbol if isinstance(symbol, str) else None
        return None

    def text(self, combined: bool, microseconds: bool = False) -> str:
        """The frame text for a client reading combined or raw streams."""
        variant = (combined, microseconds)
        cached = self._texts.get(variant)
        if cached is not None:
            return cached
        if combined and not microseconds and self.captured_text is not None:
            text = self.captured_text
        else:
            payload = in_microseconds(self.payload) if microseconds else self.payload
            data = encode_json(payload)
            text = f'{{"stream":{encode_json(self.stream)},"data":{data}}}' if combined else data
        self._texts[variant] = text
        return text
