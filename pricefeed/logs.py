"""Logging that an attacker (or a broken peer) cannot flood or forge."""
from __future__ import annotations

import logging
import time
from typing import Callable

REPR_LIMIT = 160


def excerpt(data: object, limit: int = REPR_LIMIT) -> str:
    """`repr` of at most `limit` characters of `data`: a newline in it cannot forge a log line."""
    if not isinstance(data, (bytes, bytearray, str)):
        data = str(data)
    head = bytes(data[:limit]) if isinstance(data, (bytes, bytearray)) else data[:limit]
    return repr(head) + (f"... ({len(data)} in all)" if len(data) > limit else "")


class RateLimitedLog:
    """At most `per_interval` records per `interval` seconds; the rest are counted, then summarised."""

    def __init__(self, logger: logging.Logger, per_interval: int = 10, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.per_interval = per_interval
        self.interval = interval
        self._clock = clock
        self._window_start = clock()
        self._logged = 0
        self.suppressed = 0

    def warning(self, message: str, *args: object) -> bool:
        """Log unless over the limit; True if logged."""
        now = self._clock()
        if now - self._window_start >= self.interval:
            if self.suppressed:
                self.logger.warning("%d similar messages suppressed in the last %.0fs", self.suppressed,
                                    now - self._window_start)
            self._window_start, self._logged, self.suppressed = now, 0, 0
        if self._logged >= self.per_interval:
            self.suppressed += 1
            return False
        self._logged += 1
        self.logger.warning(message, *args)
        return True
