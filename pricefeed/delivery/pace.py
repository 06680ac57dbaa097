"""Paces: how often a client is sent its pairs' prices, and the hub's groups of clients by pace.

`0` is every tick. Any other pace is conflated: at most one update per pair per
interval. Intervals are rounded up to a grid of SLOT_PERIOD so the set of groups is
bounded (at most MAX_INTERVAL_MS / GRID_MS of them, whatever clients ask for); a group
spreads its clients over interval / SLOT_PERIOD slots, and one hub-level timer ticking
every SLOT_PERIOD flushes, at tick t, slot t mod slot_count of every group. No timer per
client, and no timer per group.
"""
from __future__ import annotations

import math

SLOT_PERIOD = 0.05                  # seconds between timer ticks (consecutive slots of a group)
GRID_MS = int(SLOT_PERIOD * 1000)   # paces are whole multiples of this
MIN_INTERVAL_MS = 100               # the range a client may ask for, besides 0
MAX_INTERVAL_MS = 60_000
EVERY_TICK = 0


def on_grid(milliseconds: float) -> int:
    """Rounded up to the grid: rounding must never send updates more often than asked."""
    if milliseconds <= 0:
        return EVERY_TICK
    return max(1, math.ceil(milliseconds / GRID_MS - 1e-9)) * GRID_MS


def pace_in_force(requested_ms: int | None, floor_s: float) -> int:
    """The pace a client gets: what it asked for (absent: the deployment's floor), never faster
    than the floor (PRICEFEED_MIN_UPDATE_INTERVAL), on the grid."""
    floor_ms = on_grid(floor_s * 1000)
    if requested_ms is None:
        return floor_ms
    return on_grid(max(requested_ms, floor_ms))


class PaceGroup:
    """The clients of one conflated pace, spread over its slots (round-robin as they connect)."""

    __slots__ = ("interval_ms", "slot_count", "slots", "_next_slot", "size")

    def __init__(self, interval_ms: int):
        self.interval_ms = interval_ms
        self.slot_count = max(1, round(interval_ms / GRID_MS))
        self.slots: list[set] = [set() for _ in range(self.slot_count)]
        self._next_slot = 0
        self.size = 0

    def add(self, client) -> int:
        """Put `client` in the next slot; returns the slot."""
        slot = self._next_slot
        self._next_slot = (slot + 1) % self.slot_count
        self.slots[slot].add(client)
        self.size += 1
        return slot

    def remove(self, client, slot: int) -> None:
        members = self.slots[slot]
        if client in members:
            members.remove(client)
            self.size -= 1

    def due(self, tick: int) -> set:
        """The clients to flush at timer tick `tick`."""
        return self.slots[tick % self.slot_count]
