"""Dropping the duplicates of a make-before-break overlap, without muting a symbol for good.

During a switch-over both connections carry the same trades; per symbol we keep
the last trade id (and tickers' last event time) and drop what is not newer.
An exchange failover can restart ids, and a hostile frame can carry a huge id
or a time far ahead: a memory that only ever grows would then drop every later
trade of that symbol until the next reconnect. So when an id or time jumps back
further than any overlap could explain, the memory for that symbol is reset
and the tick is taken as new.
"""
from __future__ import annotations

# An overlap lasts about a second: it can never lag this many trade ids behind...
ID_RESTART_GAP = 1_000_000
# ...nor deliver, behind the newest id, a trade whose event time is this much later
# (a duplicate is older than the trade it duplicates)...
TIME_AHEAD_TOLERANCE_MS = 1_000
# ...nor one (or a ticker) this much older than the newest seen.
DEDUP_HORIZON_MS = 60_000


class Deduplicator:
    """Per-key memory of the newest (id, event time) accepted."""

    def __init__(self) -> None:
        self._newest: dict[object, tuple[int, int]] = {}
        self.duplicates = 0
        self.resets = 0

    def clear(self) -> None:
        self._newest.clear()

    def accept(self, key: object, order_id: int, event_time: int) -> bool:
        """True if (`order_id`, `event_time`) is new for `key` (and remember it); False for a duplicate."""
        newest = self._newest.get(key)
        if newest is not None and order_id <= newest[0]:
            last_id, last_time = newest
            jumped_back = (last_id - order_id > ID_RESTART_GAP
                           or event_time > last_time + TIME_AHEAD_TOLERANCE_MS
                           or event_time < last_time - DEDUP_HORIZON_MS)
            if not jumped_back:
                self.duplicates += 1
                return False
            self.resets += 1
        self._newest[key] = (order_id, event_time)
        return True
