"""Reading the exchange's catalogue at start and every few minutes, within the REST limits.

`CatalogueReader` asks `GET /api/v3/exchangeInfo` (weight 20; the whole catalogue, so a pair
the exchange does not list cannot fail the call and the closest listed pairs can be named),
through the REST circuit breaker and the shared weight budget, and hands each catalogue it
reads to `on_catalogue`. Until one is read the service runs on the configured pairs as
guessed; a read that fails is tried again sooner than the refresh (or, under a region block
or firewall refusal, after AccessRefusals' interval), and a delisting is picked up at the
next refresh.
"""
from __future__ import annotations

import http.client
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import gevent
import pybreaker

from pricefeed.exchange.access import AccessRefusals
from pricefeed.exchange.catalogue import (
    EXCHANGE_INFO_PATH,
    EXCHANGE_INFO_WEIGHT,
    TRADING,
    ExchangeCatalogue,
    parse_exchange_info,
)
from pricefeed.exchange.request_weight import RequestWeight
from pricefeed.exchange.rest_request import ExchangeServerError, error_reply, get, retry_after
from pricefeed.logs import outside, short_reason
from pricefeed.validation import Rejected

log = logging.getLogger(__name__)

# The whole catalogue of binance.com, without permission sets, is several MB.
MAX_BODY_BYTES = 32 << 20
RETRY_AFTER_FAILURE_SECONDS = 30.0
WEIGHT_WAIT_SECONDS = 5.0


class CatalogueReader:
    """Keeps the exchange's catalogue fresh for one worker."""

    def __init__(self, rest_url: str, on_catalogue: Callable[[ExchangeCatalogue], None], *,
                 refresh: float, breaker: pybreaker.CircuitBreaker, weight: RequestWeight,
                 access: AccessRefusals, timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, on_settled: Callable[[], None] = lambda: None):
        # showPermissionSets=false: the permission lists are most of the reply, and unused here.
        self.url = f"{rest_url.rstrip('/')}{EXCHANGE_INFO_PATH}?showPermissionSets=false"
        self.on_catalogue = on_catalogue
        self.on_settled = on_settled
        self.refresh = refresh
        self.breaker = breaker
        self.weight = weight
        self.access = access
        self.timeout = timeout
        self._clock = clock
        self._greenlet: gevent.Greenlet | None = None
        self.catalogue: ExchangeCatalogue | None = None
        self.read_at: float | None = None       # monotonic, the last successful read
        self.reads = 0
        self._settled = False   # the first read has been tried: the node may connect, whatever came of it
        self.failures = 0
        self.last_error = ""

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._read_forever)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def _read_forever(self) -> None:
        while True:
            try:
                wait = self.read_once()
            except Exception:  # noqa: BLE001 - the reader must outlive any bug in one read
                log.exception("catalogue: read failed; continuing")
                wait = RETRY_AFTER_FAILURE_SECONDS
            gevent.sleep(wait)

    @property
    def settled(self) -> bool:
        """The first read was tried (read, or failed): the stream may open now, on its result or on
        the configured pairs as named."""
        return self._settled

    def is_trading(self, symbol: str) -> bool:
        """What the catalogue last said (True before it was read: the configured pairs as named)."""
        listed = self.catalogue.symbols.get(symbol) if self.catalogue is not None else None
        return listed is None or listed.status == TRADING

    def read_once(self) -> float:
        """One attempt; the seconds until the next. Workers spread their refreshes (+-10 %)."""
        first = not self._settled
        try:
            return self._read()
        finally:
            self._settled = True
            if first:
                self.on_settled()

    def _read(self) -> float:
        if not self.weight.allows(EXCHANGE_INFO_WEIGHT):
            return WEIGHT_WAIT_SECONDS
        try:
            status, headers, body = self.breaker.call(self._fetch)
        except pybreaker.CircuitBreakerError as exc:
            return self._failed(f"breaker {self.breaker.name} open: {exc}")
        except ExchangeServerError as exc:
            return self._failed(str(exc), exc.retry_after)
        except (OSError, http.client.HTTPException) as exc:
            return self._failed(short_reason(exc))
        self.weight.note_server_used(headers)
        if status != 200:
            if self.access.applies(status):
                self.failures += 1
                self.last_error = f"HTTP {status}"
                return self.access.refused(status, "catalogue", self.url)
            reply = error_reply(body)
            return self._failed(f"HTTP {status}" + (f" (code {reply[0]})" if reply else ""),
                                retry_after(headers), detail=reply[1] if reply else outside(body))
        self.access.answered("catalogue")
        try:
            catalogue = parse_exchange_info(body)
        except Rejected as exc:
            return self._failed(f"malformed exchangeInfo ({exc.reason})", detail=outside(body, 120))
        self.catalogue, self.read_at = catalogue, self._clock()
        self.reads += 1
        self.last_error = ""
        self.weight.set_exchange_limit(catalogue.weight_limit_per_minute)
        self._settled = True
        self.on_catalogue(catalogue)
        return self.refresh * random.uniform(0.9, 1.1)

    def _fetch(self) -> tuple[int, Any, bytes]:
        self.weight.spend(EXCHANGE_INFO_WEIGHT)
        return get(self.url, self.timeout, MAX_BODY_BYTES)

    def _failed(self, reason: str, wait: float | None = None, detail: str = "") -> float:
        self.failures += 1
        self.last_error = reason
        wait = max(wait or 0.0, min(RETRY_AFTER_FAILURE_SECONDS, self.refresh))
        log.warning("catalogue: cannot read %s: %s%s; %s; next try in %.0fs", self.url.split("?")[0], reason,
                    f" {detail}" if detail else "",
                    "serving the pairs as last read" if self.catalogue else "serving the configured pairs as named",
                    wait)
        return wait

    def status(self) -> dict:
        catalogue = self.catalogue
        return {
            "read": catalogue is not None,
            "symbols": len(catalogue.symbols) if catalogue else None,
            "age_s": round(self._clock() - self.read_at, 1) if self.read_at is not None else None,
            "refresh_s": self.refresh,
            "reads": self.reads, "failures": self.failures, "last_error": self.last_error,
            "weight_limit_per_minute": catalogue.weight_limit_per_minute if catalogue else None,
        }
