"""Logging what comes from outside: truncated `repr`s, and warnings that cannot flood the log.

Text from the exchange, Redis or a client goes into a log line only as `outside(text)`:
a `repr` cut to a bounded length, so a newline cannot forge a log line and a
megabyte body cannot fill the disk. A warning that may repeat at the rate of
incoming data goes through `RateLimitedLog`: the first of each kind per interval is
logged, and the next one logged says how many were suppressed in between.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

OUTSIDE_LIMIT = 120


def outside(value: Any, limit: int = OUTSIDE_LIMIT) -> str:
    """`repr` of a value that came from outside, at most about `limit` characters."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value[: limit + 1])
    elif not isinstance(value, str):
        value = str(value)
    text = repr(value[: limit + 1] if len(value) > limit else value)
    return text if len(value) <= limit else text[: limit + 2] + "…"


def short_reason(exc: BaseException) -> str:
    """An exception as a short reason safe for logs and /health: its type and a cut `repr`."""
    return f"{type(exc).__name__}: {outside(str(exc))}"


class RateLimitedLog:
    """At most one warning per key per `interval_s`; the next one tells how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: Any) -> bool:
        """Log `msg % args` unless `key` was logged within the interval. True if it was logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d more like this suppressed in the last %.0fs)"
            args = (*args, suppressed, now - last if last is not None else 0.0)
        self.logger.warning(msg, *args)
        return True
