"""A short, bounded price history per pair, for sparklines: one point per interval.

Fed by the hub with every tick it delivers (so per worker, in memory, from the
prices it already has). A point is the last price seen in its interval, stamped
with the interval's start (exchange time, ms); an interval without a tick has no
point. At most window / interval points per pair, whatever the tick rate.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from pricefeed.ticks import PriceTick


class PriceHistory:
    def __init__(self, pairs: Iterable[str], interval_ms: int = 1000, window_ms: int = 900_000):
        if interval_ms <= 0 or window_ms < interval_ms:
            raise ValueError("interval_ms must be > 0 and window_ms >= interval_ms")
        self.interval_ms = interval_ms
        self.window_ms = window_ms
        points = window_ms // interval_ms
        self._points: dict[str, deque[list]] = {pair: deque(maxlen=points) for pair in pairs}

    def record(self, tick: PriceTick) -> None:
        points = self._points.get(tick.pair)
        if points is None:
            return
        start = tick.ts - tick.ts % self.interval_ms
        if points and points[-1][0] == start:
            points[-1][1] = tick.price
        elif not points or points[-1][0] < start:
            points.append([start, tick.price])
        # Older than the newest point (a re-read after a reconnect): already covered.

    def window(self, pairs: Iterable[str], now_ms: int) -> dict[str, list[list]]:
        """Each pair's points within the window ending at `now_ms`, oldest first: [[ts ms, "price"], ...]."""
        since = now_ms - self.window_ms
        return {pair: [[ts, price] for ts, price in self._points.get(pair, ()) if ts >= since]
                for pair in pairs}
