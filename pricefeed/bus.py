"""The bus: carries ticks from the one publisher to every worker's hub.

One interface, one backend per transport (like centrifuge's brokers or
python-socketio's managers): `InProcessBus` here for a single host without
Redis; `RedisBus` in `redis_bus.py` for a deployment sharing one upstream.
The bus stamps each published tick with the publisher's epoch and a sequence
number; those make `id: <epoch>-<seq>` on the wire and let hubs drop ticks from
a deposed publisher.
"""
from __future__ import annotations

import itertools
import time
from abc import ABC, abstractmethod
from typing import Callable

from .ticks import PriceTick

Deliver = Callable[[PriceTick], None]


class Bus(ABC):
    """Publish ticks; deliver every published tick to this worker's subscriber."""

    @abstractmethod
    def start(self, deliver: Deliver) -> None:
        """Begin delivering ticks to `deliver` (this worker's one subscription)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop delivering; release connections."""

    @abstractmethod
    def publish(self, tick: PriceTick) -> PriceTick | None:
        """Stamp and publish `tick`; None if this publisher may not publish (fenced out)."""

    @abstractmethod
    def last_prices(self) -> list[PriceTick]:
        """The last published tick per pair, for snapshots after a (re)connect."""

    @abstractmethod
    def status(self) -> dict:
        """State for /health."""


class InProcessBus(Bus):
    """Single-process bus: publish calls the subscriber directly.

    Each process is its own publisher, so its epoch is taken from the clock at
    start: ids from a restarted process sort after the old ones.
    """

    def __init__(self) -> None:
        self.epoch = int(time.time() * 1000)
        self._seq = itertools.count(1)
        self._deliver: Deliver | None = None
        self._last: dict[str, PriceTick] = {}
        self.published = 0

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def stop(self) -> None:
        self._deliver = None

    def publish(self, tick: PriceTick) -> PriceTick | None:
        stamped = tick.stamped(self.epoch, next(self._seq))
        self._last[stamped.pair] = stamped
        self.published += 1
        if self._deliver is not None:
            self._deliver(stamped)
        return stamped

    def last_prices(self) -> list[PriceTick]:
        return list(self._last.values())

    def status(self) -> dict:
        return {"backend": "in-process", "epoch": self.epoch, "published": self.published}
