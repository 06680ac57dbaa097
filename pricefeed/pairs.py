"""Trading pairs: the names users speak (BTC/USD) and the symbols the exchange speaks (BTCUSDT)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from pricefeed.validation import asset_shaped

MAX_ASSET_LENGTH = 20


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

    @property
    def aliased(self) -> bool:
        """Traded under another quote than its name says (BTC/USD as BTCUSDT)."""
        return self.quote != self.exchange_quote

    def traded_as(self, exchange_quote: str) -> Pair:
        return replace(self, exchange_quote=exchange_quote)


def parse_pair(text: str, stable_quote: str = "USDT") -> Pair:
    """Parse `BASE/QUOTE`, case-insensitively for ASCII letters. Until the exchange's catalogue
    says otherwise, USD is guessed to trade as the stable quote (binance.com lists no USD)."""
    # Only ASCII is upper-cased: Unicode case folding turns "ß" into "SS", a symbol nobody asked
    # for. Unicode letters pass as the exchange lists them (asset_shaped refuses lower case).
    cleaned = "".join(c.upper() if c.isascii() else c for c in text.strip())
    base, sep, quote = cleaned.partition("/")
    if not sep or not asset_shaped(base, MAX_ASSET_LENGTH) or not asset_shaped(quote, MAX_ASSET_LENGTH):
        raise PairError("malformed_pair", f"{text[:40]!r} is not a pair like BTC/USD")
    exchange_quote = stable_quote if quote == "USD" else quote
    return Pair(base, quote, exchange_quote)


RESOLVED_LISTS_KEPT = 4096


class PairCatalog:
    """The pairs this deployment serves: every configured pair by name (`configured`), and the
    ones it asks the exchange for by symbol (`pairs`).

    Built from the configured names with the stable-quote guess; `adopt` replaces the guess
    with what the exchange's own catalogue lists (exchange/catalogue.py), and leaves a pair it
    does not list out of `pairs` (nothing would ever come for it) but still served by name.
    """

    def __init__(self, names: Iterable[str], stable_quote: str = "USDT"):
        self.stable_quote = stable_quote
        self.configured: tuple[Pair, ...] = tuple(parse_pair(name, stable_quote) for name in names)
        self.pairs: tuple[Pair, ...] = self.configured
        self._index()
        if len(self._by_symbol) != len(self.pairs):
            raise PairError("duplicate_pair", "two configured pairs map to the same exchange symbol")

    def _index(self) -> None:
        self._by_name = {pair.name: pair for pair in self.configured}
        self._by_symbol = {pair.symbol: pair for pair in self.pairs}
        # resolve_list's answers for this index: every stream's open asks, mostly the same few lists.
        self._resolved: dict[tuple[str, int], tuple[Pair, ...]] = {}

    def adopt(self, traded: Mapping[str, Pair | None]) -> bool:
        """Take the exchange's names: per configured pair name, the Pair it trades as, or None if
        the exchange does not list it. True if the symbols to ask the exchange for changed."""
        configured = tuple(traded.get(pair.name) or pair for pair in self.configured)
        pairs = tuple(pair for pair in configured if traded.get(pair.name, pair) is not None)
        symbols = {pair.symbol for pair in pairs}
        if len(symbols) != len(pairs):
            return False     # two names on one symbol: keep what we have (config refuses this)
        changed = [p.symbol for p in pairs] != [p.symbol for p in self.pairs]
        self.configured, self.pairs = configured, pairs
        self._index()
        return changed

    def by_name(self, name: str) -> Pair | None:
        return self._by_name.get(name)

    def by_symbol(self, symbol: str) -> Pair | None:
        return self._by_symbol.get(symbol.upper() if symbol.isascii() else symbol)

    def resolve(self, text: str) -> Pair:
        """The served pair a client means by `text`; PairError if malformed or not served."""
        pair = parse_pair(text, self.stable_quote)
        served = self._by_name.get(pair.name) or self._by_symbol.get(pair.symbol)
        if served is None:
            raise PairError("unknown_pair", f"{pair.name} is not served; available: "
                            + ", ".join(p.name for p in self.configured))
        return served

    def resolve_list(self, text: str | None, limit: int) -> tuple[Pair, ...]:
        """Parse a `pairs=` query value. None means every served pair; empty is malformed."""
        if text is None:
            return self.configured
        resolved_before = self._resolved.get((text, limit))
        if resolved_before is not None:
            return resolved_before
        resolved = self._resolve_list(text, limit)
        if len(self._resolved) >= RESOLVED_LISTS_KEPT:
            self._resolved.clear()
        self._resolved[(text, limit)] = resolved
        return resolved

    def _resolve_list(self, text: str, limit: int) -> tuple[Pair, ...]:
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
