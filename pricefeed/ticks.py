"""PriceTick: one price of one pair as it travels from the exchange to the browser."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

_PERCENT = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class PriceTick:
    """A price as the exchange sent it (a decimal string), stamped by the publisher.

    `epoch` is the publisher's fencing epoch and `seq` its sequence within that
    epoch: together they order ticks and let subscribers drop a deposed leader's.
    """

    pair: str            # "BTC/USD"
    symbol: str          # "BTCUSDT"
    price: str           # "43250.12000000", exactly as sent
    ts: int              # exchange event time, ms
    source: str          # "binance", "simulator" (never shown as a real price) or "rest"
    open24h: str | None = None
    epoch: int = 0
    seq: int = 0

    @property
    def event_id(self) -> str:
        return f"{self.epoch}-{self.seq}"

    def stamped(self, epoch: int, seq: int) -> "PriceTick":
        return replace(self, epoch=epoch, seq=seq)

    def change24h(self) -> str | None:
        """Percent change against the 24 h open, computed in decimal (never float)."""
        if not self.open24h:
            return None
        try:
            opened = Decimal(self.open24h)
            if opened == 0:
                return None
            return str(((Decimal(self.price) - opened) * 100 / opened).quantize(_PERCENT))
        except InvalidOperation:
            return None

    def payload(self, stale: bool = False, age_ms: int | None = None) -> dict[str, Any]:
        """The JSON object clients receive for this price."""
        body: dict[str, Any] = {
            "pair": self.pair, "symbol": self.symbol, "price": self.price,
            "ts": self.ts, "source": self.source, "stale": stale,
        }
        if self.open24h is not None:
            body["open24h"] = self.open24h
            change = self.change24h()
            if change is not None:
                body["change24h"] = change
        if stale and age_ms is not None:
            body["age_ms"] = age_ms
        return body

    def to_json(self) -> str:
        """Compact wire form for the bus; `from_json` reverses it."""
        return json.dumps([self.pair, self.symbol, self.price, self.ts, self.source,
                           self.open24h, self.epoch, self.seq], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "PriceTick":
        """ValueError for anything that is not a tick `to_json` wrote (e.g. another version's)."""
        fields = json.loads(text)
        if not isinstance(fields, list) or len(fields) != 8:
            raise ValueError("malformed tick on the bus")
        pair, symbol, price, ts, source, open24h, epoch, seq = fields
        if not (isinstance(pair, str) and isinstance(symbol, str) and isinstance(price, str)
                and isinstance(source, str) and (open24h is None or isinstance(open24h, str))
                and all(isinstance(n, int) and not isinstance(n, bool) for n in (ts, epoch, seq))):
            raise ValueError("malformed tick on the bus")
        return cls(pair, symbol, price, ts, source, open24h, epoch, seq)
