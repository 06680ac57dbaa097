"""The degraded tier: polling the exchange's REST ticker while its WebSocket cannot connect.

`RestPoller` asks `GET /api/v3/ticker/price` for every configured pair every
`interval` seconds and hands each price that changed to `on_tick` as a
`PriceTick` with source "rest". Polling costs request weight that every client
on our IP shares (BINANCE.md, "REST fallback"), so it stays within budget:

- its own sliding 60 s window of spent weight, capped at `weight_budget_per_minute`
  (default 600, a tenth of Binance's 6,000);
- it pauses while the exchange says the IP's whole use (`X-MBX-USED-WEIGHT-1M`)
  is past half the limit, as other clients on the IP may be the heavy ones;
- 429 and 418 (banned): no request at all until `Retry-After` has passed;
- 403 (firewall), 451 (region not served) and other refusals: a long pause,
  since asking again soon cannot help;
- 5xx and network errors go through the circuit breaker, which after repeated
  failures fails fast without touching the network until its reset timeout.
"""
from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from http.client import HTTPMessage
from typing import Any, Callable

import gevent
import pybreaker

import pricefeed.validation as validation
from pricefeed.breakers import new_breaker
from pricefeed.logs import RateLimitedLog, outside, short_reason
from pricefeed.pairs import PairCatalog
from pricefeed.ticks import PriceTick

log = logging.getLogger(__name__)

TICKER_PATH = "/api/v3/ticker/price"
WEIGHT_ONE_SYMBOL = 2
WEIGHT_SYMBOL_LIST = 4
WEIGHT_WINDOW_SECONDS = 60.0
BINANCE_WEIGHT_LIMIT = 6000
# Past this share of the IP's limit (as the exchange reports it) we stop polling for the minute.
SERVER_WEIGHT_BACKOFF_SHARE = 0.5
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
# How long to wait after a refusal that asking again soon cannot fix (403, 451, other 4xx).
REFUSAL_PAUSE_SECONDS = 60.0
# When a 429/418 comes without Retry-After (Binance always sends one): 418 bans last >= 2 min.
DEFAULT_RETRY_AFTER = {429: 60.0, 418: 120.0}
DEFAULT_MAX_BODY_BYTES = 1 << 20


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead off TLS or to another host: it is answered as the 3xx it is."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 - urllib's hook
        return None


# Proxies from the environment still apply (build_opener keeps its ProxyHandler).
_OPENER = urllib.request.build_opener(_NoRedirects)


class ExchangeServerError(Exception):
    """A 5xx from the exchange: a failure of the service, which the breaker counts."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class RestPoller:
    """Polls the REST price ticker for the catalog's pairs and publishes changed prices."""

    def __init__(self, rest_url: str, catalog: PairCatalog, on_tick: Callable[[PriceTick], None], *,
                 interval: float = 2.0, weight_budget_per_minute: int = 600, timeout: float = 3.0,
                 breaker: pybreaker.CircuitBreaker | None = None,
                 clock: Callable[[], float] = time.monotonic, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.catalog = catalog
        self.on_tick = on_tick
        self.interval = interval
        self.weight_budget = weight_budget_per_minute
        self.timeout = timeout
        self.breaker = (breaker if breaker is not None
                        else new_breaker("rest", fail_max=3, reset_timeout=30.0))
        self._clock = clock
        self.max_body_bytes = max_body_bytes
        self.url, self.weight = _ticker_url(rest_url, [pair.symbol for pair in catalog.pairs])
        self._greenlet: gevent.Greenlet | None = None
        self._spent: deque[tuple[float, int]] = deque()   # (when, weight) of requests sent
        self._blocked_until: float | None = None          # no request before this (Retry-After, refusal)
        self._server_pause_until: float | None = None     # the IP's minute is too busy
        self._server_used_weight: int | None = None
        self._last_price: dict[str, str] = {}              # symbol -> price last published
        self._last_success_at: float | None = None
        self.polls = 0          # requests sent
        self.failures = 0       # requests that brought no prices
        self.malformed = 0      # bodies or rows that were not valid prices
        self.last_error = ""
        self._warnings = RateLimitedLog(log, 10.0)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Poll every `interval` in a greenlet until `stop()`."""
        if self._greenlet is None:
            # Prices may have moved on the WebSocket since we last polled: publish afresh.
            self._last_price.clear()
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
        if self._waiting() or not self._within_budget():
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
        self._note_server_weight(headers)
        if status != 200:
            self.failures += 1
            self._refused(status, headers, body)
            return 0
        return self._publish(body)

    def _fetch(self, sent: list[bool]) -> tuple[int, HTTPMessage, bytes]:
        """One request (inside the breaker): 4xx are answers to handle, 5xx and errors are failures."""
        self._spent.append((self._clock(), self.weight))
        self.polls += 1
        sent.append(True)
        try:
            with _OPENER.open(self.url, timeout=self.timeout) as response:
                return response.status, response.headers, self._read_capped(response)
        except urllib.error.HTTPError as error:
            with error:
                body = self._read_capped(error)
            if error.code >= 500:
                raise ExchangeServerError(error.code, _retry_after(error.headers)) from None
            return error.code, error.headers, body

    def _read_capped(self, response) -> bytes:
        """At most `max_body_bytes` (+1, to tell an oversized body, which then parses as malformed)."""
        body = response.read(self.max_body_bytes + 1)
        return b"" if len(body) > self.max_body_bytes else body

    def _publish(self, body: bytes) -> int:
        # The REST ticker carries no event time: the tick is stamped with when we received it.
        received_ms = time.time_ns() // 1_000_000
        try:
            rows = json.loads(body)
        except ValueError:
            rows = None
        if isinstance(rows, dict):
            rows = [rows]       # `symbol=` answers with one object, `symbols=` with a list
        if not isinstance(rows, list):
            self.failures += 1
            self._count_malformed(f"body is not a ticker list: {outside(body, 120)}")
            return 0
        self._last_success_at = self._clock()
        published = 0
        for row in rows:
            symbol = row.get("symbol") if isinstance(row, dict) else None
            price = row.get("price") if isinstance(row, dict) else None
            try:
                validation.symbol(symbol)
                validation.price(price)
            except validation.Rejected as exc:
                self._count_malformed(f"row rejected ({exc.reason}): {outside(row, 120)}")
                continue
            pair = self.catalog.by_symbol(symbol)
            if pair is None or self._last_price.get(pair.symbol) == price:
                continue    # not ours, or a repeated price, which is not a new tick
            self._last_price[pair.symbol] = price
            published += 1
            try:
                self.on_tick(PriceTick(pair.name, pair.symbol, price, received_ms, "rest"))
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
        now = self._clock()
        return any(until is not None and now < until
                   for until in (self._blocked_until, self._server_pause_until))

    def _within_budget(self) -> bool:
        return self.weight_used_last_minute() + self.weight <= self.weight_budget

    def weight_used_last_minute(self) -> int:
        cutoff = self._clock() - WEIGHT_WINDOW_SECONDS
        while self._spent and self._spent[0][0] <= cutoff:
            self._spent.popleft()
        return sum(weight for _, weight in self._spent)

    def _block(self, seconds: float) -> None:
        until = self._clock() + seconds
        self._blocked_until = max(until, self._blocked_until or until)

    def _note_server_weight(self, headers: HTTPMessage) -> None:
        used = _int_header(headers, USED_WEIGHT_HEADER)
        if used is None:
            return
        self._server_used_weight = used
        if used > BINANCE_WEIGHT_LIMIT * SERVER_WEIGHT_BACKOFF_SHARE:
            # Binance counts weight per calendar minute: wait for the next one (+1 s of slack).
            rest_of_minute = WEIGHT_WINDOW_SECONDS - time.time() % WEIGHT_WINDOW_SECONDS + 1.0
            self._server_pause_until = self._clock() + rest_of_minute
            log.warning("rest: the exchange reports %d of %d request weight used on this IP this "
                        "minute; pausing polls for %.0fs", used, BINANCE_WEIGHT_LIMIT, rest_of_minute)

    def _refused(self, status: int, headers: HTTPMessage, body: bytes) -> None:
        # Never the body in /health: a status code is all an operator needs there.
        detail = outside(body)
        self.last_error = f"HTTP {status}"
        if status in (429, 418):
            wait = _retry_after(headers) or DEFAULT_RETRY_AFTER[status]
            self._block(wait)
            if status == 418:
                log.error("rest: HTTP 418: the exchange has banned this IP for ignoring 429s; "
                          "no requests for %gs (Retry-After)", wait)
            else:
                log.warning("rest: HTTP 429: request rate limit hit; no requests for %gs "
                            "(Retry-After)", wait)
            return
        self._block(REFUSAL_PAUSE_SECONDS)
        if status == 451:
            log.error("rest: HTTP 451: %s does not serve this region; from the US set "
                      "PRICEFEED_REST_URL=https://api.binance.us (Binance.US); retrying in %gs",
                      self.url.split("/api/")[0], REFUSAL_PAUSE_SECONDS)
        elif status == 403:
            log.error("rest: HTTP 403: blocked by the exchange's firewall (WAF); retrying in %gs",
                      REFUSAL_PAUSE_SECONDS)
        else:
            log.error("rest: HTTP %d from %s: %s; retrying in %gs", status, self.url.split("?")[0],
                      detail, REFUSAL_PAUSE_SECONDS)

    # -- health --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For /health. `polls` counts requests sent; `last_poll_age_s` is since the last one that
        brought a ticker list; `blocked_until_s` is what is left of a Retry-After or refusal pause."""
        now = self._clock()
        blocked = self._blocked_until
        return {
            "running": self.running,
            "polls": self.polls,
            "failures": self.failures,
            "malformed": self.malformed,
            "last_poll_age_s": None if self._last_success_at is None
            else round(now - self._last_success_at, 3),
            "weight_used_last_minute": self.weight_used_last_minute(),
            "server_used_weight_1m": self._server_used_weight,
            "blocked_until_s": round(blocked - now, 3) if blocked is not None and now < blocked else None,
            "last_error": self.last_error,
        }


def _ticker_url(rest_url: str, symbols: list[str]) -> tuple[str, int]:
    """The ticker URL for `symbols` and its request weight (`symbol=` costs half of `symbols=`)."""
    base = rest_url.rstrip("/") + TICKER_PATH
    if len(symbols) == 1:
        return f"{base}?symbol={symbols[0]}", WEIGHT_ONE_SYMBOL
    listed = json.dumps(symbols, separators=(",", ":"))
    return f"{base}?symbols={urllib.parse.quote(listed, safe='')}", WEIGHT_SYMBOL_LIST


def _int_header(headers: HTTPMessage | None, name: str) -> int | None:
    value = headers.get(name) if headers is not None else None
    try:
        return int(value.strip()) if value else None
    except ValueError:
        return None


def _retry_after(headers: HTTPMessage | None) -> float | None:
    """`Retry-After` in seconds (Binance sends seconds, never an HTTP date)."""
    seconds = _int_header(headers, "Retry-After")
    return float(seconds) if seconds is not None and seconds > 0 else None
