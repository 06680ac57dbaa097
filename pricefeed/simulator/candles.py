"""Kline candles of one symbol, for the `<symbol>@kline_<interval>` streams."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .instruments import format_units, multiply_units

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR

# Binance's intervals except `1M`, whose calendar months a fixed grid can't
# express; subscribing to it is accepted and simply gets no data.
INTERVALS_MS = {
    "1s": _SECOND, "1m": _MINUTE, "3m": 3 * _MINUTE, "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE, "30m": 30 * _MINUTE, "1h": _HOUR, "2h": 2 * _HOUR,
    "4h": 4 * _HOUR, "6h": 6 * _HOUR, "8h": 8 * _HOUR, "12h": 12 * _HOUR,
    "1d": _DAY, "3d": 3 * _DAY, "1w": 7 * _DAY,
}
# The Unix epoch was a Thursday; Binance's weeks start on Monday.
_WEEK_OFFSET = 4 * _DAY


def interval_start(interval: str, time_ms: int) -> int:
    """Open time of the candle of `interval` that contains `time_ms`."""
    length = INTERVALS_MS[interval]
    offset = _WEEK_OFFSET if interval == "1w" else 0
    return (time_ms - offset) // length * length + offset


@dataclass
class Candle:
    """One open candle; amounts in 1e-8 units."""

    symbol: str
    interval: str
    open_time: int
    open: int
    high: int
    low: int
    close: int
    first_trade_id: int = -1
    last_trade_id: int = -1
    trades: int = 0
    volume: int = 0
    quote_volume: int = 0
    taker_buy_volume: int = 0
    taker_buy_quote_volume: int = 0

    @property
    def close_time(self) -> int:
        return self.open_time + INTERVALS_MS[self.interval] - 1

    def add_trade(self, trade_id: int, price: int, quantity: int, buyer_is_maker: bool) -> None:
        if self.trades == 0:
            self.open = self.high = self.low = price
            self.first_trade_id = trade_id
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.last_trade_id = trade_id
        self.trades += 1
        quote = multiply_units(price, quantity)
        self.volume += quantity
        self.quote_volume += quote
        if not buyer_is_maker:   # the buyer took liquidity
            self.taker_buy_volume += quantity
            self.taker_buy_quote_volume += quote

    def payload(self, event_time: int, closed: bool) -> dict[str, Any]:
        """The `kline` event exactly as Binance shapes it."""
        return {
            "e": "kline", "E": event_time, "s": self.symbol,
            "k": {
                "t": self.open_time, "T": self.close_time, "s": self.symbol,
                "i": self.interval, "f": self.first_trade_id, "L": self.last_trade_id,
                "o": format_units(self.open), "c": format_units(self.close),
                "h": format_units(self.high), "l": format_units(self.low),
                "v": format_units(self.volume), "n": self.trades, "x": closed,
                "q": format_units(self.quote_volume),
                "V": format_units(self.taker_buy_volume),
                "Q": format_units(self.taker_buy_quote_volume), "B": "0",
            },
        }


class CandleSet:
    """The open candle of every interval for one symbol."""

    def __init__(self, symbol: str, price: int, now_ms: int) -> None:
        self.symbol = symbol
        self._candles = {interval: self._fresh(interval, price, now_ms) for interval in INTERVALS_MS}

    def _fresh(self, interval: str, price: int, time_ms: int) -> Candle:
        return Candle(self.symbol, interval, interval_start(interval, time_ms),
                      price, price, price, price)

    def roll(self, now_ms: int) -> list[dict[str, Any]]:
        """Close every candle whose interval has ended; return the closing payloads."""
        closed = []
        for interval, candle in self._candles.items():
            if now_ms > candle.close_time:
                closed.append(candle.payload(now_ms, closed=True))
                self._candles[interval] = self._fresh(interval, candle.close, now_ms)
        return closed

    def add_trade(self, time_ms: int, trade_id: int, price: int, quantity: int,
                  buyer_is_maker: bool) -> list[dict[str, Any]]:
        """Record a trade; return the payloads of candles it closed by starting a new one."""
        closed = self.roll(time_ms)
        for candle in self._candles.values():
            candle.add_trade(trade_id, price, quantity, buyer_is_maker)
        return closed

    def updates(self, now_ms: int) -> list[dict[str, Any]]:
        """The running (`x: false`) payload of every open candle."""
        return [candle.payload(now_ms, closed=False) for candle in self._candles.values()]
