"""The REST request weight this worker spends, and what the exchange says the whole IP spent.

Every REST call costs weight that every client on our IP shares (BINANCE.md, "REST fallback"):
the price tier and the catalogue draw on one budget here — a sliding 60 s window capped at
`budget_per_minute` — and both pause while the exchange reports (`X-MBX-USED-WEIGHT-1M`) the
IP past half its limit. The limit is the exchange's own, from exchangeInfo's `rateLimits`,
once the catalogue has been read (6000 until then, Binance's documented figure).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from email.message import Message

from pricefeed.exchange.rest_request import int_header

log = logging.getLogger("pricefeed.exchange.rest")

WINDOW_SECONDS = 60.0
DEFAULT_EXCHANGE_LIMIT = 6000
# Past this share of the IP's limit (as the exchange reports it) we stop asking for the minute.
SERVER_BACKOFF_SHARE = 0.5
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class RequestWeight:
    """One worker's REST weight: its own budget and the exchange's view of the IP."""

    def __init__(self, budget_per_minute: int = 600, clock: Callable[[], float] = time.monotonic):
        self.budget = budget_per_minute
        self.exchange_limit = DEFAULT_EXCHANGE_LIMIT
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()   # (when, weight) of requests sent
        self.server_used: int | None = None
        self._pause_until: float | None = None

    def allows(self, weight: int) -> bool:
        """May a request of `weight` go now?"""
        if self._pause_until is not None and self._clock() < self._pause_until:
            return False
        return self.used_last_minute() + weight <= self.budget

    def spend(self, weight: int) -> None:
        self._spent.append((self._clock(), weight))

    def used_last_minute(self) -> int:
        cutoff = self._clock() - WINDOW_SECONDS
        while self._spent and self._spent[0][0] <= cutoff:
            self._spent.popleft()
        return sum(weight for _, weight in self._spent)

    def set_exchange_limit(self, limit: int | None) -> None:
        """The exchange's REQUEST_WEIGHT per minute, from its catalogue's rateLimits."""
        if limit and limit != self.exchange_limit:
            log.info("rest: the exchange's request weight limit is %d per minute", limit)
            self.exchange_limit = limit

    def note_server_used(self, headers: Message | None) -> None:
        used = int_header(headers, USED_WEIGHT_HEADER)
        if used is None:
            return
        self.server_used = used
        if used > self.exchange_limit * SERVER_BACKOFF_SHARE:
            # Binance counts weight per calendar minute: wait for the next one (+1 s of slack).
            rest_of_minute = WINDOW_SECONDS - time.time() % WINDOW_SECONDS + 1.0
            self._pause_until = self._clock() + rest_of_minute
            log.warning("rest: the exchange reports %d of %d request weight used on this IP this "
                        "minute; pausing REST requests for %.0fs", used, self.exchange_limit, rest_of_minute)
