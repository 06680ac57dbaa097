"""The exchange's own catalogue (`GET /api/v3/exchangeInfo`), and what it says about our pairs.

Pure parsing and matching, no I/O (catalogue_reader.py fetches). For each configured pair:

- listed under its own name (`BTC/USD` on Binance.US is BTCUSD): that symbol, nothing else;
- not listed, but its USD quote is listed as the stable quote (binance.com has BTCUSDT, no
  BTCUSD): traded as that alias, and every entry then names the traded symbol and quote;
- neither: `unlisted` — never reported live, and the log names the closest listed pairs.

A listed symbol whose status is not TRADING (HALT, BREAK, and since 2026 CANCEL_ONLY) is
`halted`: no new prices come, so its last one is never shown as fresh.
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pricefeed.validation as validation
from pricefeed.pairs import MAX_ASSET_LENGTH, Pair
from pricefeed.validation import Rejected

EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
EXCHANGE_INFO_WEIGHT = 20
TRADING = "TRADING"
# The statuses clients see per pair (plus "live" / "stale", which the hub derives from age).
LISTED, HALTED, UNLISTED = "listed", "halted", "unlisted"
# Quotes offered first when a pair is not listed: the ones USD users mean.
_PREFERRED_QUOTES = ("USDT", "USDC", "FDUSD", "USD", "BTC", "ETH", "BNB", "EUR")
MAX_STATUS_LENGTH = 20
MAX_SUGGESTIONS = 3


@dataclass(frozen=True, slots=True)
class Listed:
    """One symbol of the catalogue."""

    symbol: str
    base: str
    quote: str
    status: str       # the exchange's word: TRADING, HALT, BREAK, CANCEL_ONLY, ...

    @property
    def name(self) -> str:
        return f"{self.base}/{self.quote}"


@dataclass(frozen=True)
class ExchangeCatalogue:
    """What the exchange lists, and its REQUEST_WEIGHT limit per minute (None if it gave none)."""

    symbols: dict[str, Listed]
    weight_limit_per_minute: int | None = None
    by_assets: dict[tuple[str, str], Listed] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_assets.update({(item.base, item.quote): item for item in self.symbols.values()})


@dataclass(frozen=True, slots=True)
class Standing:
    """A configured pair as the exchange lists it: what clients see about it besides the price."""

    pair: str                 # the configured name, "BTC/USD"
    listing: str              # LISTED, HALTED or UNLISTED
    symbol: str | None        # the traded symbol (None when unlisted)
    quote: str | None         # the traded quote when it differs from the name's (an alias)
    exchange_status: str | None = None   # the catalogue's word for a halted symbol

    def describe(self) -> dict[str, Any]:
        body: dict[str, Any] = {"symbol": self.symbol}
        if self.quote is not None:
            body["quote"] = self.quote
        if self.exchange_status is not None:
            body["exchange_status"] = self.exchange_status
        return body


def parse_exchange_info(body: bytes | str) -> ExchangeCatalogue:
    """Parse an exchangeInfo reply. Symbols that break the rules are left out (and counted by the
    caller through `skipped`); a reply without a `symbols` list is Rejected as a whole."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise Rejected("not_json", "exchangeInfo is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("symbols"), list):
        raise Rejected("bad_shape", "exchangeInfo has no symbols list")
    symbols: dict[str, Listed] = {}
    for row in document["symbols"]:
        item = _listed(row)
        if item is not None:
            symbols[item.symbol] = item
    return ExchangeCatalogue(symbols, _weight_limit(document.get("rateLimits")))


def _listed(row: Any) -> Listed | None:
    if not isinstance(row, dict):
        return None
    symbol, base, quote, status = (row.get(key) for key in ("symbol", "baseAsset", "quoteAsset", "status"))
    try:
        symbol = validation.symbol(symbol)
    except Rejected:
        return None
    if not (isinstance(base, str) and isinstance(quote, str) and isinstance(status, str)
            and validation.asset_shaped(base, MAX_ASSET_LENGTH) and validation.asset_shaped(quote, MAX_ASSET_LENGTH)
            and 0 < len(status) <= MAX_STATUS_LENGTH and status.isascii()):
        return None
    return Listed(symbol, base, quote, status)


# Looked up with whatever `interval` the exchange sent (a string when well-formed).
_MINUTES_PER_INTERVAL: dict[object, float] = {"SECOND": 1 / 60, "MINUTE": 1, "HOUR": 60, "DAY": 1440}


def _weight_limit(limits: Any) -> int | None:
    """REQUEST_WEIGHT per minute from `rateLimits` (an interval of N minutes is scaled to one)."""
    if not isinstance(limits, list):
        return None
    for item in limits:
        if not isinstance(item, dict) or item.get("rateLimitType") != "REQUEST_WEIGHT":
            continue
        limit, num, interval = item.get("limit"), item.get("intervalNum", 1), item.get("interval")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (limit, num)):
            continue
        minutes = _MINUTES_PER_INTERVAL.get(interval)
        if minutes:
            return max(1, int(limit / (num * minutes)))
    return None


def stand(pairs: Iterable[Pair], catalogue: ExchangeCatalogue,
          stable_quote: str) -> dict[str, tuple[Pair | None, Standing]]:
    """Per configured pair name: the Pair it trades as (None: unlisted) and its Standing."""
    result: dict[str, tuple[Pair | None, Standing]] = {}
    for pair in pairs:
        own = catalogue.by_assets.get((pair.base, pair.quote))
        alias = (catalogue.by_assets.get((pair.base, stable_quote))
                 if own is None and pair.quote == "USD" and stable_quote != "USD" else None)
        listed = own or alias
        if listed is None:
            result[pair.name] = (None, Standing(pair.name, UNLISTED, None, None))
            continue
        traded = pair.traded_as(listed.quote)
        halted = listed.status != TRADING
        result[pair.name] = (traded, Standing(pair.name, HALTED if halted else LISTED, listed.symbol,
                                              listed.quote if traded.aliased else None,
                                              listed.status if halted else None))
    return result


def closest_listed(pair: Pair, catalogue: ExchangeCatalogue, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """Listed, trading pairs a user of `pair` most likely means: the same base under the quotes
    USD users mean first, then bases spelled alike under the same quote."""
    trading = [item for item in catalogue.symbols.values() if item.status == TRADING]
    same_base = [item for item in trading if item.base == pair.base]
    rank = {quote: index for index, quote in enumerate(_PREFERRED_QUOTES)}
    same_base.sort(key=lambda item: (item.quote != pair.quote, rank.get(item.quote, len(rank)), item.quote))
    names = [item.name for item in same_base[:limit]]
    if len(names) < limit:
        bases = sorted({item.base for item in trading if item.quote == pair.quote})
        for base in difflib.get_close_matches(pair.base, bases, n=limit - len(names), cutoff=0.6):
            names.append(f"{base}/{pair.quote}")
    return names
