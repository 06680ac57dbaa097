"""The exchange's current view of each symbol: last trade and best bid/ask.

Fed by every event the market publishes (so a replay moves it exactly as the
capture did) and read by the REST endpoints and `/_sim/prices`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .streams import MarketEvent


@dataclass(frozen=True)
class Quote:
    """A symbol's state before any trade was published: what REST answers at start."""

    symbol: str
    price: str | None
    bid: str | None = None
    bid_qty: str | None = None
    ask: str | None = None
    ask_qty: str | None = None


@dataclass
class _SymbolView:
    price: str | None = None
    bid: str | None = None
    bid_qty: str | None = None
    ask: str | None = None
    ask_qty: str | None = None
    # The last trade actually published; `/_sim/prices` shows only these.
    trade: dict[str, Any] | None = None
    open24h: str | None = None          # from the 24 h tickers
    opened_ms: int = 0                  # when the exchange opened: closeTime before any trade


class Quotes:
    """Last trade and top of book per symbol, as strings exactly as published."""

    def __init__(self) -> None:
        self._views: dict[str, _SymbolView] = {}

    def open(self, quote: Quote) -> None:
        """Set a symbol's opening state (no trade published yet)."""
        self._views[quote.symbol] = _SymbolView(quote.price, quote.bid, quote.bid_qty,
                                                quote.ask, quote.ask_qty, opened_ms=time.time_ns() // 1_000_000)

    def observe(self, event: MarketEvent) -> None:
        """Update from a published event; events of other types are ignored."""
        payload = event.payload
        symbol = event.symbol
        if symbol is None:
            return
        kind = payload.get("e")
        if kind in ("aggTrade", "trade"):
            price = payload.get("p")
            if not isinstance(price, str):
                return
            view = self._views.setdefault(symbol, _SymbolView())
            view.price = price
            view.trade = {
                "price": price,
                "ts": payload.get("T", payload.get("E")),
                "trade_id": payload.get("a") if kind == "aggTrade" else payload.get("t"),
            }
        elif kind in ("24hrMiniTicker", "24hrTicker") and isinstance(payload.get("o"), str):
            self._views.setdefault(symbol, _SymbolView()).open24h = payload["o"]
        elif kind is None and "b" in payload and "a" in payload:   # bookTicker
            view = self._views.setdefault(symbol, _SymbolView())
            view.bid, view.bid_qty = payload.get("b"), payload.get("B")
            view.ask, view.ask_qty = payload.get("a"), payload.get("A")

    def symbols(self) -> list[str]:
        return sorted(self._views)

    def knows(self, symbol: str) -> bool:
        return symbol in self._views

    def price(self, symbol: str) -> str | None:
        view = self._views.get(symbol)
        return view.price if view else None

    def book(self, symbol: str) -> dict[str, str | None] | None:
        view = self._views.get(symbol)
        if view is None or view.bid is None:
            return None
        return {"bidPrice": view.bid, "bidQty": view.bid_qty,
                "askPrice": view.ask, "askQty": view.ask_qty}

    def ticker_24h(self, symbol: str) -> dict[str, Any] | None:
        """The 24 h ticker's MINI row: `lastPrice` with `closeTime`, the time of the last trade."""
        view = self._views.get(symbol)
        if view is None or view.price is None:
            return None
        close_time = view.trade["ts"] if view.trade and isinstance(view.trade.get("ts"), int) else view.opened_ms
        opened = view.open24h or view.price
        return {"symbol": symbol, "openPrice": opened, "highPrice": view.price, "lowPrice": view.price,
                "lastPrice": view.price, "volume": "0.00000000", "quoteVolume": "0.00000000",
                "openTime": close_time - 86_400_000, "closeTime": close_time,
                "firstId": -1, "lastId": -1, "count": 0}

    def last_trades(self) -> dict[str, dict[str, Any]]:
        """`{"BTCUSDT": {"price", "ts", "trade_id"}}` for symbols that have traded."""
        return {symbol: dict(view.trade) for symbol, view in sorted(self._views.items())
                if view.trade is not None}
