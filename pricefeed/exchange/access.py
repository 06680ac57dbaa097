"""When the exchange refuses this host outright: a region it does not serve (451) or its firewall (403).

Neither lifts in seconds, and retrying in a loop only spends the 300-attempts-per-5-minutes
budget (BINANCE.md, "Region blocks"). The stream handshake, the REST tier and the catalogue
all report here; `/health` names the reason, one log line says what to change, and every
caller waits `retry_interval` (about a minute) before its next attempt.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pricefeed.shown_urls import reduce_url

log = logging.getLogger(__name__)

REGION_NOT_SERVED = "region_not_served"
BLOCKED_BY_FIREWALL = "blocked_by_exchange_firewall"
REASONS = {451: REGION_NOT_SERVED, 403: BLOCKED_BY_FIREWALL}
DEFAULT_RETRY_INTERVAL = 60.0

_FIX = {
    REGION_NOT_SERVED: (
        "the exchange does not serve this region. Fix: point BOTH PRICEFEED_UPSTREAM_URL and "
        "PRICEFEED_REST_URL at a venue that serves it (from the US, Binance.US: "
        "wss://stream.binance.us:9443 and https://api.binance.us); pair names and `source` "
        "follow the venue, never one URL alone"),
    BLOCKED_BY_FIREWALL: (
        "the exchange's firewall (WAF) blocks this host's address. Fix: run from another address, "
        "or ask the exchange; check the URLs point at its public market-data hosts"),
}


class AccessRefusals:
    """The refusal in force, if any, and where it was seen (handshake, rest, catalogue)."""

    def __init__(self, retry_interval: float = DEFAULT_RETRY_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.retry_interval = retry_interval
        self._clock = clock
        self.reason: str | None = None
        self.status_code: int | None = None
        self.since: float | None = None          # wall clock
        self.seen_by: dict[str, float] = {}      # where -> monotonic time of the latest refusal
        self.refusals = 0

    @staticmethod
    def applies(status: int) -> bool:
        return status in REASONS

    def refused(self, status: int, where: str, url: str) -> float:
        """Record a 451 or 403 seen by `where` on `url`; the seconds to wait before trying again.
        The log line with the fix is written once per episode, not once per attempt."""
        reason = REASONS[status]
        self.refusals += 1
        self.seen_by[where] = self._clock()
        if reason != self.reason:
            self.reason, self.status_code, self.since = reason, status, time.time()
            log.error("exchange: HTTP %d from %s (%s): %s; %s; trying again about every %.0fs, "
                      "the service stays degraded meanwhile", status, reduce_url(url), where, reason,
                      _FIX[reason], self.retry_interval)
        else:
            log.info("exchange: still %s (HTTP %d on the %s); next attempt in %.0fs",
                     reason, status, where, self.retry_interval)
        return self.retry_interval

    def answered(self, where: str) -> None:
        """`where` got a real answer: the refusal it saw is over (once none still sees one)."""
        if self.seen_by.pop(where, None) is not None:
            self._end_if_over(f"the {where} was answered")

    def current(self) -> str | None:
        """The reason in force. A caller that saw the refusal and then stopped asking (the REST
        tier once the stream is back) does not hold it for ever: its sighting lapses after
        three retry intervals."""
        cutoff = self._clock() - 3 * self.retry_interval
        for where, at in list(self.seen_by.items()):
            if at < cutoff:
                del self.seen_by[where]
        self._end_if_over("no refusal for three retry intervals")
        return self.reason

    def _end_if_over(self, why: str) -> None:
        if not self.seen_by and self.reason:
            log.warning("exchange: %s is over (%s)", self.reason, why)
            self.reason = self.status_code = self.since = None

    def status(self) -> dict:
        self.current()
        return {"reason": self.reason, "http_status": self.status_code, "since": self.since,
                "seen_by": sorted(self.seen_by), "refusals": self.refusals,
                "retry_interval_s": self.retry_interval}
