"""InProcessBus: the bus of a single process without Redis.

Publishing calls the subscriber directly. This process is its own and only
publisher, so there is never another leader to hear from: no heartbeat, no
release. Its epoch is taken from the clock at start, so ids from a restarted
process sort after the old ones — in milliseconds, times 1000, plus the process id's
last three digits: the workers of one gunicorn start in the same millisecond now and
then, and two publishers sharing an epoch would tell a browser that moved from one to
the other that it missed nothing (resume `gap: false`) when their ticks differ.
"""
from __future__ import annotations

import itertools
import os
import time

from pricefeed.cluster.bus import Bus, Deliver
from pricefeed.ticks import PriceTick


class InProcessBus(Bus):
    def __init__(self) -> None:
        super().__init__()
        self.epoch = int(time.time() * 1000) * 1000 + os.getpid() % 1000
        self._seq = itertools.count(1)
        self._deliver: Deliver | None = None
        self._last: dict[str, PriceTick] = {}

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def stop(self) -> None:
        self._deliver = None

    def publish(self, tick: PriceTick) -> PriceTick | None:
        stamped = tick.stamped(self.epoch, next(self._seq))
        self._last[stamped.pair] = stamped
        self.published += 1
        if self._deliver is not None:
            self.received += 1      # handed straight to this worker's hub
            self._deliver(stamped)
        return stamped

    def publish_many(self, ticks: list[PriceTick]) -> list[PriceTick | None]:
        return [self.publish(tick) for tick in ticks]

    def publish_heartbeat(self, body: dict) -> bool:
        return True   # nobody else to tell: every tick goes straight to this process's hub

    def last_prices(self) -> list[PriceTick]:
        return list(self._last.values())

    @property
    def subscribed(self) -> bool:
        return self._deliver is not None

    @property
    def leader_heartbeat(self) -> dict | None:
        return None

    def heartbeat_age(self) -> float:
        return 0.0

    def leader_alive(self) -> bool:
        return False

    def status(self) -> dict:
        return {"backend": "in-process", "epoch": self.epoch, "published": self.published,
                "subscribed": self.subscribed}
