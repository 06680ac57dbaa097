"""Binance's REST market-data endpoints a client falls back to, with request weights.

`/api/v3/ticker/price`, `/api/v3/ticker/bookTicker`, `/api/v3/ping`,
`/api/v3/time`. Each request costs weight (2 with `symbol`, 4 with
`symbols=[...]` or none, 1 for ping/time) in a per-IP window of one calendar
minute, reported in `X-MBX-USED-WEIGHT-1M`; past the limit the answer is 429
with `Retry-After`, like Binance.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any, Callable
from urllib.parse import parse_qs

from .faults import FaultState
from .quotes import Quotes
from .responses import StartResponse, json_response
from .stats import Stats

_SYMBOL = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
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

    def __init__(self, quotes: Quotes, stats: Stats, faults: FaultState, weight_limit: int) -> None:
        self._quotes = quotes
        self._stats = stats
        self._faults = faults
        self._weights = WeightWindow(weight_limit)
        self._routes: dict[str, Callable[[dict[str, list[str]]], Any]] = {
            "/api/v3/ping": lambda query: {},
            "/api/v3/time": lambda query: {"serverTime": time.time_ns() // 1_000_000},
            "/api/v3/ticker/price": self._ticker_price,
            "/api/v3/ticker/bookTicker": self._book_ticker,
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        self._stats.rest_requests += 1
        path = environ.get("PATH_INFO", "")
        route = self._routes.get(path)
        if route is None:
            return json_response(start_response, 404, {"code": -1, "msg": f"Unknown path {path}"})
        if environ.get("REQUEST_METHOD") != "GET":
            return json_response(start_response, 405, {"code": -1, "msg": "Method not allowed"})

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
            451: (0, "Service unavailable from a restricted location."),
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
            if not _SYMBOL.match(symbol):
                raise RestError(-1100, "Illegal characters found in parameter 'symbol'; "
                                "legal range is '^[A-Z0-9-_.]{1,20}$'.")
            return True, [symbol]
        if "symbols" in query:
            try:
                symbols = json.loads(query["symbols"][-1])
            except ValueError:
                symbols = None
            if (not isinstance(symbols, list) or not symbols
                    or not all(isinstance(s, str) and _SYMBOL.match(s) for s in symbols)):
                raise RestError(-1100, "Illegal characters found in parameter 'symbols'; "
                                "legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.")
            return False, list(dict.fromkeys(symbols))
        return False, self._quotes.symbols()

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
