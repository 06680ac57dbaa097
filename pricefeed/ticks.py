"""PriceTick: one price of one pair as it travels from the exchange to the browser."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

import pricefeed.validation as validation
from pricefeed.validation import Rejected

_PERCENT = Decimal("0.001")
_SOURCE = re.compile(r"[a-z]{1,20}", re.ASCII)
# A bus message longer than this is not a tick we wrote (ours are ~150 bytes).
MAX_WIRE_LENGTH = 1024


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

    def stamped(self, epoch: int, seq: int) -> PriceTick:
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

    def payload(self, stale: bool = False, age_ms: int | None = None, status: str | None = None,
                quote: str | None = None) -> dict[str, Any]:
        """The JSON object clients receive for this price. `status` (live, stale, halted,
        unlisted) defaults to what `stale` says; `quote` is given when the pair trades under
        another quote than its name says (BTC/USD as BTCUSDT)."""
        body: dict[str, Any] = {
            "pair": self.pair, "symbol": self.symbol, "price": self.price,
            "ts": self.ts, "source": self.source, "stale": stale,
            "status": status or ("stale" if stale else "live"),
        }
        if quote is not None:
            body["quote"] = quote
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
    def from_json(cls, text: str | bytes, max_skew_ms: int | None = None) -> PriceTick:
        """Parse a tick `to_json` wrote, with every rule of `pricefeed.validation` checked again
        (Redis is not trusted more than the exchange). Raises `Rejected` (a ValueError) whose
        `reason` names the broken rule. With `max_skew_ms`, `ts` must lie that close to now."""
        if len(text) > MAX_WIRE_LENGTH:
            raise Rejected("tick_too_long", f"{len(text)} bytes")
        try:
            fields = json.loads(text)
        except (ValueError, RecursionError):
            raise Rejected("not_json", "tick is not JSON") from None
        if not isinstance(fields, list) or len(fields) != 8:
            raise Rejected("bad_shape", "tick is not an 8-item list")
        pair, symbol, price, ts, source, open24h, epoch, seq = fields
        if not isinstance(pair, str) or not _pair_shaped(pair):
            raise Rejected("pair_shape", f"pair {str(pair)[:40]!r}")
        if not isinstance(source, str) or not _SOURCE.fullmatch(source):
            raise Rejected("source_shape", f"source {str(source)[:40]!r}")
        ts = (validation.identifier(ts, "ts") if max_skew_ms is None
              else validation.event_time(ts, max_skew_ms, field="ts"))
        return cls(pair, validation.symbol(symbol), validation.price(price),
                   ts, source, validation.optional_price(open24h, "open24h"),
                   validation.identifier(epoch, "epoch"), validation.identifier(seq, "seq"))


def _pair_shaped(text: str) -> bool:
    base, sep, quote = text.partition("/")
    return bool(sep) and validation.asset_shaped(base, 20) and validation.asset_shaped(quote, 20)
