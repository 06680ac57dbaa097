"""Binance's REST market-data endpoints a client falls back to, with request weights.

`/api/v3/ticker/price`, `/api/v3/ticker/bookTicker`, `/api/v3/ticker/24hr`
(`type=MINI|FULL`), `/api/v3/exchangeInfo`, `/api/v3/ping`, `/api/v3/time`. Each
request costs weight (tickers: 2 with `symbol`, 4 with `symbols=[...]` or none;
the 24 h ticker 2 / 40 / 80 by count; exchangeInfo 20; 1 for ping/time) in a
per-IP window of one calendar minute, reported in `X-MBX-USED-WEIGHT-1M`; past
the limit the answer is 429 with `Retry-After`, like Binance.

Like Binance: one unknown symbol in `symbol=` or `symbols=[...]` fails the whole
call with `400 -1121`; `symbolStatus=TRADING` leaves other statuses out of a list
(or of the whole catalogue) and answers `-1220` for a single symbol in another
status; a `block` fault answers 451 (or 403) to everything.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from .faults import FaultState
from .listing import STATUSES, Listing
from .quotes import Quotes
from .responses import StartResponse, json_response
from .stats import Stats

_SYMBOL = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_WEIGHT_EXCHANGE_INFO = 20
_WEIGHT_ONE_SYMBOL = 2
_WEIGHT_MANY_SYMBOLS = 4
_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class RestError(Exception):
    """A request Binance would answer with `{"code": .., "msg": ..}` and a 4xx."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


class WeightWindow:
    """Request weight used per client IP in the current calendar minute."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used: dict[str, tuple[int, int]] = {}   # ip -> (minute, weight)

    def spend(self, ip: str, weight: int) -> tuple[int, float]:
        """Add `weight`; return `(used this minute, seconds until the window resets)`."""
        now = time.time()
        minute = int(now // 60)
        window, used = self._used.get(ip, (minute, 0))
        used = (used if window == minute else 0) + weight
        self._used[ip] = (minute, used)
        return used, (minute + 1) * 60 - now


class RestApi:
    """The REST endpoints, answering from the exchange's current quotes."""

    def __init__(self, quotes: Quotes, stats: Stats, faults: FaultState, weight_limit: int,
                 listing: Listing) -> None:
        self._quotes = quotes
        self._listing = listing
        self._stats = stats
        self._faults = faults
        self._weights = WeightWindow(weight_limit)
        self._routes: dict[str, Callable[[dict[str, list[str]]], Any]] = {
            "/api/v3/ping": lambda query: {},
            "/api/v3/time": lambda query: {"serverTime": time.time_ns() // 1_000_000},
            "/api/v3/ticker/price": self._ticker_price,
            "/api/v3/ticker/bookTicker": self._book_ticker,
            "/api/v3/ticker/24hr": self._ticker_24h,
            "/api/v3/exchangeInfo": self._exchange_info,
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        self._stats.rest_requests += 1
        path = environ.get("PATH_INFO", "")
        route = self._routes.get(path)
        if route is None:
            return json_response(start_response, 404, {"code": -1, "msg": f"Unknown path {path}"})
        if environ.get("REQUEST_METHOD") != "GET":
            return json_response(start_response, 405, {"code": -1, "msg": "Method not allowed"})

        blocked = self._faults.blocked()
        if blocked is not None:
            self._stats.rest_failed += 1
            return self._failure(start_response, blocked, 0)
        failure = self._faults.rest_failure()
        if failure is not None:
            self._stats.rest_failed += 1
            return self._failure(start_response, *failure)

        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        weight = self._weight(path, query)
        used, reset_in = self._weights.spend(environ.get("REMOTE_ADDR", ""), weight)
        headers = [(_WEIGHT_HEADER, str(used))]
        if used > self._weights.limit:
            self._stats.rest_rejected += 1
            return json_response(start_response, 429, {
                "code": -1003,
                "msg": f"Too much request weight used; current limit is {self._weights.limit} "
                       "request weight per 1 MINUTE. Please use WebSocket Streams for live "
                       "updates to avoid polling the API."},
                headers + [("Retry-After", str(max(1, int(reset_in + 0.999))))])
        try:
            body = route(query)
        except RestError as error:
            return json_response(start_response, error.status,
                                 {"code": error.code, "msg": error.msg}, headers)
        return json_response(start_response, 200, body, headers)

    @staticmethod
    def _weight(path: str, query: dict[str, list[str]]) -> int:
        if path == "/api/v3/exchangeInfo":
            return _WEIGHT_EXCHANGE_INFO
        if path == "/api/v3/ticker/24hr":
            if "symbol" in query:
                return 2
            try:
                count = len(json.loads(query["symbols"][-1])) if "symbols" in query else None
            except (ValueError, TypeError):
                count = 1
            return 80 if count is None or count > 100 else 40 if count > 20 else 2
        if not path.startswith("/api/v3/ticker/"):
            return 1
        return _WEIGHT_ONE_SYMBOL if "symbol" in query else _WEIGHT_MANY_SYMBOLS

    @staticmethod
    def _failure(start_response: StartResponse, status: int, retry_after: int) -> list[bytes]:
        headers = [("Retry-After", str(retry_after))] if status in (418, 429, 503) else []
        if status == 403:
            # Binance's firewall answers with an HTML page, not JSON.
            body = b"<html><body><h1>403 Forbidden</h1></body></html>"
            start_response("403 Forbidden", [("Content-Type", "text/html"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        messages = {
            429: (-1003, "Too many requests; please use the websocket for live updates."),
            418: (-1003, "Way too many requests; IP banned until further notice."),
            451: (0, "Service unavailable from a restricted location according to 'b. Eligibility' in "
                     "https://www.binance.com/en/terms."),
        }
        code, msg = messages.get(status, (-1000, "An unknown error occurred while processing the request."))
        return json_response(start_response, status, {"code": code, "msg": msg}, headers)

    # -- endpoints ---------------------------------------------------------------

    def _requested_symbols(self, query: dict[str, list[str]]) -> tuple[bool, list[str]]:
        """`(single, symbols)` from `symbol=X` or `symbols=["X","Y"]`, or all known."""
        if "symbol" in query and "symbols" in query:
            raise RestError(-1128, "Combination of optional parameters invalid.")
        if "symbol" in query:
            symbol = query["symbol"][-1]
            if not _symbol_ok(symbol):
                raise RestError(-1100, "Illegal characters found in parameter 'symbol'; "
                                "legal range is '^[A-Z0-9-_.]{1,20}$'.")
            return True, [symbol]
        if "symbols" in query:
            try:
                symbols = json.loads(query["symbols"][-1])
            except ValueError:
                symbols = None
            if (not isinstance(symbols, list) or not symbols
                    or not all(isinstance(s, str) and _symbol_ok(s) for s in symbols)):
                raise RestError(-1100, "Illegal characters found in parameter 'symbols'; "
                                "legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.")
            return False, list(dict.fromkeys(symbols))
        return False, self._quotes.symbols()

    def _selected(self, query: dict[str, list[str]], known: Callable[[str], bool]) -> tuple[bool, list[str]]:
        """Symbols asked for, as Binance filters them: an unknown one in an explicit list fails
        the call (-1121); `symbolStatus` leaves others out, or refuses a single one (-1220)."""
        single, symbols = self._requested_symbols(query)
        explicit = single or "symbols" in query
        if explicit and not all(known(symbol) for symbol in symbols):
            raise RestError(-1121, "Invalid symbol.")
        wanted = query.get("symbolStatus", [None])[-1]
        if wanted is not None:
            if wanted not in STATUSES:
                raise RestError(-1100, "Illegal characters found in parameter 'symbolStatus'.")
            matching = [symbol for symbol in symbols if self._listing.status(symbol) == wanted]
            if single and not matching:
                raise RestError(-1220, "The symbol's status does not match the requested symbolStatus.")
            symbols = matching
        return single, symbols

    def _ticker_24h(self, query: dict[str, list[str]]) -> Any:
        kind = query.get("type", ["FULL"])[-1]
        if kind not in ("FULL", "MINI"):
            raise RestError(-1100, "Illegal characters found in parameter 'type'.")
        single, symbols = self._selected(query, lambda symbol: self._listing.status(symbol) is not None)
        rows = [row for row in (self._quotes.ticker_24h(symbol) for symbol in symbols if
                                self._listing.status(symbol) is not None) if row is not None]
        if kind == "FULL":
            for row in rows:
                row.update({"priceChange": "0", "priceChangePercent": "0", "weightedAvgPrice": row["lastPrice"],
                            "prevClosePrice": row["openPrice"], "lastQty": "0", "bidPrice": row["lastPrice"],
                            "bidQty": "0", "askPrice": row["lastPrice"], "askQty": "0"})
        return rows[0] if single and rows else rows

    def _exchange_info(self, query: dict[str, list[str]]) -> Any:
        if "symbol" in query or "symbols" in query:
            _, symbols = self._selected(query, lambda symbol: self._listing.status(symbol) is not None)
        else:
            wanted = query.get("symbolStatus", [None])[-1]
            symbols = [symbol for symbol in self._listing.symbols()
                       if wanted is None or self._listing.status(symbol) == wanted]
        return self._listing.exchange_info(symbols, self._weights.limit)

    def _ticker_price(self, query: dict[str, list[str]]) -> Any:
        single, symbols = self._requested_symbols(query)
        explicit = single or "symbols" in query
        rows = []
        for symbol in symbols:
            price = self._quotes.price(symbol)
            if price is None:
                if explicit:
                    raise RestError(-1121, "Invalid symbol.")
                continue
            rows.append({"symbol": symbol, "price": price})
        return rows[0] if single else rows

    def _book_ticker(self, query: dict[str, list[str]]) -> Any:
        single, symbols = self._requested_symbols(query)
        explicit = single or "symbols" in query
        rows = []
        for symbol in symbols:
            book = self._quotes.book(symbol)
            if book is None:
                if explicit:
                    raise RestError(-1121, "Invalid symbol.")
                continue
            rows.append({"symbol": symbol, **book})
        return rows[0] if single else rows


def _symbol_ok(symbol: str) -> bool:
    """Binance's legal range, widened to the letters of other scripts it lists since 2025-12."""
    return bool(_SYMBOL.match(symbol)) or (
        0 < len(symbol) <= 20 and all((c.isalnum() and not c.islower()) or c in "-_." for c in symbol))
