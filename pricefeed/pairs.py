"""Trading pairs: the names users speak (BTC/USD) and the symbols the exchange speaks (BTCUSDT)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

_ASSET = re.compile(r"^[A-Z0-9]{1,20}$")


class PairError(ValueError):
    """A pair in a request or setting is malformed or not served here."""

    def __init__(self, error: str, detail: str):
        super().__init__(detail)
        self.error = error
        self.detail = detail


@dataclass(frozen=True, order=True)
class Pair:
    """One market. `name` is what clients see; `symbol` is the exchange's id for it."""

    base: str
    quote: str            # as the client asked, e.g. USD
    exchange_quote: str   # as the exchange lists it, e.g. USDT

    @property
    def name(self) -> str:
        return f"{self.base}/{self.quote}"

    @property
    def symbol(self) -> str:
        return f"{self.base}{self.exchange_quote}"

    @property
    def stream_symbol(self) -> str:
        """Binance stream names are lowercase."""
        return self.symbol.lower()


def parse_pair(text: str, stable_quote: str = "USDT") -> Pair:
    """Parse `BASE/QUOTE`, case-insensitively; USD maps to the stable quote."""
    # ASCII first: Unicode case folding turns "ß" into "SS", a symbol nobody asked for.
    cleaned = text.strip().upper() if text.isascii() else ""
    base, sep, quote = cleaned.partition("/")
    if not sep or not _ASSET.fullmatch(base) or not _ASSET.fullmatch(quote):
        raise PairError("malformed_pair", f"{text[:40]!r} is not a pair like BTC/USD")
    exchange_quote = stable_quote if quote == "USD" else quote
    return Pair(base, quote, exchange_quote)


class PairCatalog:
    """The pairs this deployment serves, looked up by name or by exchange symbol."""

    def __init__(self, names: Iterable[str], stable_quote: str = "USDT"):
        self.stable_quote = stable_quote
        self.pairs: tuple[Pair, ...] = tuple(parse_pair(name, stable_quote) for name in names)
        self._by_name = {pair.name: pair for pair in self.pairs}
        self._by_symbol = {pair.symbol: pair for pair in self.pairs}
        if len(self._by_symbol) != len(self.pairs):
            raise PairError("duplicate_pair", "two configured pairs map to the same exchange symbol")

    def by_symbol(self, symbol: str) -> Pair | None:
        return self._by_symbol.get(symbol.upper()) if symbol.isascii() else None

    def resolve(self, text: str) -> Pair:
        """The served pair a client means by `text`; PairError if malformed or not served."""
        pair = parse_pair(text, self.stable_quote)
        served = self._by_name.get(pair.name) or self._by_symbol.get(pair.symbol)
        if served is None:
            raise PairError("unknown_pair", f"{pair.name} is not served; available: "
                            + ", ".join(p.name for p in self.pairs))
        return served

    def resolve_list(self, text: str | None, limit: int) -> tuple[Pair, ...]:
        """Parse a `pairs=` query value. None means every served pair; empty is malformed."""
        if text is None:
            return self.pairs
        items = [item for item in text.split(",")]
        if not text.strip() or any(not item.strip() for item in items):
            raise PairError("malformed_pairs", "pairs must be a comma-separated list like BTC/USD,ETH/USD")
        if len(items) > limit:
            raise PairError("too_many_pairs", f"at most {limit} pairs per request, got {len(items)}")
        resolved: list[Pair] = []
        for item in items:
            pair = self.resolve(item)
            if pair not in resolved:
                resolved.append(pair)
        return tuple(resolved)
