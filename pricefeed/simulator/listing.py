"""The simulated exchange's catalogue: which symbols it lists, and in which status.

Every symbol the market trades is listed, `TRADING` unless told otherwise (`--status
ETHUSDT=HALT`, or `POST /_sim/listing` while running). A symbol in another status (HALT,
BREAK, CANCEL_ONLY) trades no more: its streams go quiet and REST keeps its last price, as
on Binance. A symbol it does not list is accepted on a stream and never sends anything.
`GET /api/v3/exchangeInfo` answers from here, with the REQUEST_WEIGHT limit in `rateLimits`.
"""
from __future__ import annotations

from typing import Any

TRADING = "TRADING"
STATUSES = ("TRADING", "HALT", "BREAK", "CANCEL_ONLY", "END_OF_DAY", "PRE_TRADING", "POST_TRADING")
# Longest first: FDUSD before USD, USDT before USD.
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "USD", "BTC", "ETH", "BNB", "EUR", "TRY")


def split_symbol(symbol: str) -> tuple[str, str]:
    """`BTCUSDT` -> (`BTC`, `USDT`); a symbol without a known quote is all base, quote `USDT`."""
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, "USDT"


class Listing:
    """Status per listed symbol."""

    def __init__(self, symbols: tuple[str, ...], statuses: dict[str, str] | None = None) -> None:
        self._status = {symbol: TRADING for symbol in symbols}
        for symbol, status in (statuses or {}).items():
            self.set(symbol, status)

    def set(self, symbol: str, status: str | None) -> None:
        """List `symbol` in `status`; None delists it."""
        if status is None:
            self._status.pop(symbol, None)
        elif status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        else:
            self._status[symbol] = status

    def status(self, symbol: str) -> str | None:
        return self._status.get(symbol)

    def trading(self, symbol: str | None) -> bool:
        """Events of a symbol not trading are not published (None: not a single-symbol event)."""
        return symbol is None or self._status.get(symbol, TRADING) == TRADING

    def symbols(self) -> list[str]:
        return sorted(self._status)

    def describe(self) -> dict[str, str]:
        return dict(sorted(self._status.items()))

    def exchange_info(self, symbols: list[str], weight_limit: int) -> dict[str, Any]:
        """The exchangeInfo document for `symbols` (all listed ones when the caller named none)."""
        return {
            "timezone": "UTC",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(symbol) for symbol in symbols],
        }

    def _symbol_info(self, symbol: str) -> dict[str, Any]:
        base, quote = split_symbol(symbol)
        return {
            "symbol": symbol, "status": self._status[symbol], "baseAsset": base, "baseAssetPrecision": 8,
            "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.00000001", "maxPrice": "1000000.00000000",
                         "tickSize": "0.00000001"}],
            "permissions": [], "permissionSets": [["SPOT"]],
        }
