"""The degraded tier: polling the exchange's REST ticker while its WebSocket cannot connect.

`RestPoller` asks `GET /api/v3/ticker/24hr?type=MINI&symbolStatus=TRADING` — ONE call for
every symbol, so a configured pair the exchange does not list cannot fail it (a `symbols=[..]`
list with one unknown symbol is refused whole with -1121) — and hands each of our pairs whose
price moved to `on_tick` as a `PriceTick` with source "rest". What it publishes is true:

- the time of each price is the exchange's own (`closeTime`, the window's last trade), never
  when we received it: a price that has not traded for a while ages and turns stale;
- only TRADING symbols (`symbolStatus`, and again against the catalogue's statuses): a
  halted market's last price is never republished as current;
- the 24 h open comes along, so the change figure stays right while polling.

It stays within budget (request_weight.py): weight 80 per call from one budget shared with
the catalogue, polls spaced so that budget lasts the minute, paused while the exchange says
the IP is past half its limit; 429 and 418: nothing until `Retry-After` has passed; 451 and
403 go to `AccessRefusals` (a reason in /health, one log line with the fix, about a minute
between attempts); 5xx and network errors go through the circuit breaker.
"""
from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import pybreaker

import pricefeed.validation as validation
from pricefeed.breakers import new_breaker
from pricefeed.exchange.access import DEFAULT_RETRY_INTERVAL, AccessRefusals
from pricefeed.exchange.request_weight import WINDOW_SECONDS, RequestWeight
from pricefeed.exchange.rest_request import ExchangeServerError, error_reply, get, retry_after
from pricefeed.logs import RateLimitedLog, outside, short_reason
from pricefeed.pairs import PairCatalog
from pricefeed.ticks import PriceTick

log = logging.getLogger(__name__)

TICKER_PATH = "/api/v3/ticker/24hr"
TICKER_QUERY = "type=MINI&symbolStatus=TRADING"
# Every symbol at once (no symbol parameter): Binance's weight for the 24 h ticker.
WEIGHT_ALL_SYMBOLS = 80
# When a 429/418 comes without Retry-After (Binance always sends one): 418 bans last >= 2 min.
DEFAULT_RETRY_AFTER = {429: 60.0, 418: 120.0}
# Other 4xx (a malformed request on our side): asking again soon cannot help.
REFUSAL_PAUSE_SECONDS = 60.0
# Every trading symbol of binance.com in MINI form is about 1 MB; the cap leaves room to grow.
DEFAULT_MAX_BODY_BYTES = 4 << 20

__all__ = ["ExchangeServerError", "RestPoller", "TICKER_PATH", "WEIGHT_ALL_SYMBOLS"]


class RestPoller:
    """Polls the 24 h ticker for every symbol and publishes the changed prices of the catalog's pairs."""

    def __init__(self, rest_url: str, catalog: PairCatalog, on_tick: Callable[[PriceTick], None], *,
                 interval: float = 2.0, weight_budget_per_minute: int = 600, timeout: float = 3.0,
                 breaker: pybreaker.CircuitBreaker | None = None,
                 clock: Callable[[], float] = time.monotonic, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 weight: RequestWeight | None = None, access: AccessRefusals | None = None,
                 is_trading: Callable[[str], bool] = lambda symbol: True):
        self.catalog = catalog
        self.on_tick = on_tick
        self.timeout = timeout
        self.breaker = (breaker if breaker is not None
                        else new_breaker("rest", fail_max=3, reset_timeout=30.0))
        self._clock = clock
        self.max_body_bytes = max_body_bytes
        self.weight = weight if weight is not None else RequestWeight(weight_budget_per_minute, clock)
        self.access = access if access is not None else AccessRefusals(DEFAULT_RETRY_INTERVAL, clock)
        # The catalogue's view: a symbol it lists in another status than TRADING is left out
        # even if the exchange ignored symbolStatus.
        self.is_trading = is_trading
        self.url = f"{rest_url.rstrip('/')}{TICKER_PATH}?{TICKER_QUERY}"
        # Spaced so the budget lasts the whole minute, not spent in a burst then silent.
        self.interval = max(interval, WINDOW_SECONDS * WEIGHT_ALL_SYMBOLS / max(1, self.weight.budget))
        self._greenlet: gevent.Greenlet | None = None
        self._blocked_until: float | None = None          # no request before this (Retry-After, refusal)
        self._last_published: dict[str, tuple[int, str]] = {}   # symbol -> (closeTime, price)
        self._last_success_at: float | None = None
        self.polls = 0          # requests sent
        self.failures = 0       # requests that brought no prices
        self.malformed = 0      # bodies or rows that were not valid prices
        self.left_out = 0       # rows of our symbols the catalogue says are not trading
        self.last_error = ""
        self._warnings = RateLimitedLog(log, 10.0)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Poll every `interval` in a greenlet until `stop()`."""
        if self._greenlet is None:
            # Prices may have moved on the WebSocket since we last polled: publish afresh.
            self._last_published.clear()
            self._greenlet = gevent.spawn(self._poll_forever)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    @property
    def running(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    def _poll_forever(self) -> None:
        while True:
            started = self._clock()
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must outlive any bug in one poll
                log.exception("rest: poll failed; continuing")
            gevent.sleep(max(0.0, self.interval - (self._clock() - started)))

    # -- one poll ------------------------------------------------------------------

    def poll_once(self) -> int:
        """Send one request unless a limit forbids it now; the number of ticks published."""
        if self._waiting() or not self.weight.allows(WEIGHT_ALL_SYMBOLS):
            return 0
        sent: list[bool] = []
        try:
            status, headers, body = self.breaker.call(self._fetch, sent)
        except pybreaker.CircuitBreakerError as exc:
            if sent:
                self.failures += 1
            self.last_error = f"breaker {self.breaker.name} open: {exc}"
            return 0
        except ExchangeServerError as exc:
            self.failures += 1
            self.last_error = str(exc)
            if exc.retry_after:
                self._block(exc.retry_after)
            log.warning("rest: %s from %s%s", exc, self.url.split("?")[0],
                        f" (Retry-After {exc.retry_after:g}s)" if exc.retry_after else "")
            return 0
        except (OSError, http.client.HTTPException) as exc:   # URLError, timeouts, refused, cut short
            self.failures += 1
            self.last_error = short_reason(exc)
            self._warnings.warning("failed", "rest: request failed: %s", self.last_error)
            return 0
        self.weight.note_server_used(headers)
        if status != 200:
            self.failures += 1
            self._refused(status, headers, body)
            return 0
        self.access.answered("rest")
        return self._publish(body)

    def _fetch(self, sent: list[bool]) -> tuple[int, Any, bytes]:
        """One request (inside the breaker): 4xx are answers to handle, 5xx and errors are failures."""
        self.weight.spend(WEIGHT_ALL_SYMBOLS)
        self.polls += 1
        sent.append(True)
        return get(self.url, self.timeout, self.max_body_bytes)

    def _publish(self, body: bytes) -> int:
        try:
            rows = json.loads(body)
        except (ValueError, RecursionError):
            rows = None
        if not isinstance(rows, list):
            self.failures += 1
            self._count_malformed(f"body is not a ticker list: {outside(body, 120)}")
            return 0
        self._last_success_at = self._clock()
        published = 0
        for index, row in enumerate(rows):
            if index and index % 500 == 0:
                gevent.sleep(0)    # thousands of rows: let the streams be written meanwhile
            symbol = row.get("symbol") if isinstance(row, dict) else None
            pair = self.catalog.by_symbol(symbol) if isinstance(symbol, str) else None
            if pair is None:
                continue           # not one of ours: not even checked
            try:
                price = validation.price(row.get("lastPrice"), "lastPrice")
                opened = validation.optional_price(row.get("openPrice"), "openPrice")
                at = validation.identifier(row.get("closeTime"), "closeTime")
            except validation.Rejected as exc:
                self._count_malformed(f"row rejected ({exc.reason}): {outside(row, 120)}")
                continue
            if not self.is_trading(pair.symbol):
                self.left_out += 1
                continue
            if self._last_published.get(pair.symbol) == (at, price):
                continue           # nothing new since the last poll
            self._last_published[pair.symbol] = (at, price)
            published += 1
            try:
                self.on_tick(PriceTick(pair.name, pair.symbol, price, at, "rest", opened))
            except Exception:  # noqa: BLE001 - a consumer bug must not stop the polling
                log.exception("rest: tick consumer failed for %s", pair.name)
        return published

    def _count_malformed(self, what: str) -> None:
        self.malformed += 1
        # /health keeps the kind of fault only; the exchange's bytes go to the log, cut and quoted.
        self.last_error = "malformed response"
        self._warnings.warning("malformed", "rest: malformed response #%d skipped: %s",
                               self.malformed, outside(what))

    # -- limits --------------------------------------------------------------------

    def _waiting(self) -> bool:
        until = self._blocked_until
        return until is not None and self._clock() < until

    def weight_used_last_minute(self) -> int:
        return self.weight.used_last_minute()

    def _block(self, seconds: float) -> None:
        until = self._clock() + seconds
        self._blocked_until = max(until, self._blocked_until or until)

    def _refused(self, status: int, headers, body: bytes) -> None:
        # Never the body in /health: a status code is all an operator needs there.
        self.last_error = f"HTTP {status}"
        if status in (429, 418):
            wait = retry_after(headers) or DEFAULT_RETRY_AFTER[status]
            self._block(wait)
            if status == 418:
                log.error("rest: HTTP 418: the exchange has banned this IP for ignoring 429s; "
                          "no requests for %gs (Retry-After)", wait)
            else:
                log.warning("rest: HTTP 429: request rate limit hit; no requests for %gs "
                            "(Retry-After)", wait)
            return
        if self.access.applies(status):
            self._block(self.access.refused(status, "rest", self.url))
            return
        self._block(REFUSAL_PAUSE_SECONDS)
        reply = error_reply(body)
        log.error("rest: HTTP %d from %s: %s; retrying in %gs", status, self.url.split("?")[0],
                  f"code {reply[0]}: {outside(reply[1])}" if reply else outside(body), REFUSAL_PAUSE_SECONDS)

    # -- health --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For /health. `polls` counts requests sent; `last_poll_age_s` is since the last one that
        brought a ticker list; `blocked_until_s` is what is left of a Retry-After or refusal pause."""
        now = self._clock()
        blocked = self._blocked_until
        return {
            "running": self.running,
            "interval_s": round(self.interval, 3),
            "polls": self.polls,
            "failures": self.failures,
            "malformed": self.malformed,
            "left_out_not_trading": self.left_out,
            "last_poll_age_s": None if self._last_success_at is None
            else round(now - self._last_success_at, 3),
            "weight_used_last_minute": self.weight.used_last_minute(),
            "server_used_weight_1m": self.weight.server_used,
            "exchange_weight_limit": self.weight.exchange_limit,
            "blocked_until_s": round(blocked - now, 3) if blocked is not None and now < blocked else None,
            "last_error": self.last_error,
        }
