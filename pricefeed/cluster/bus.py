"""The bus: carries ticks from the one publisher to every worker's hub.

One interface, one backend per transport (like centrifuge's brokers or
python-socketio's managers): `InProcessBus` (memory_bus.py) for a single
process without Redis; `RedisBus` (redis_bus.py) for a deployment sharing one
upstream. The bus stamps each published tick with the publisher's epoch and a
sequence number; those make `id: <epoch>-<seq>` on the wire and let hubs drop
ticks from a deposed publisher.

Besides ticks, a bus carries the leader's heartbeat (is a leader alive, and is
its exchange connection live?) and the news that a leader released its lease.
The node asks these of whichever backend it has; a backend with no other
publisher than this process answers them plainly. Every backend counts the same
things (`published`, `fenced`, `received`, `malformed`), so no caller needs to know
which backend it has.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from pricefeed.ticks import PriceTick

Deliver = Callable[[PriceTick], object]     # its return (Hub.publish says whether it took the tick) is ignored


def _nothing() -> None:
    pass


def _ignore(heartbeat: dict) -> None:
    pass


class Bus(ABC):
    """Publish ticks; deliver every published tick to this worker's subscriber."""

    def __init__(self, on_release: Callable[[], None] | None = None,
                 on_heartbeat: Callable[[dict], None] | None = None) -> None:
        #: Called when the leader announces that it released its lease (a standby may take it now).
        self.on_release = on_release or _nothing
        #: Called with each heartbeat the leader publishes.
        self.on_heartbeat = on_heartbeat or _ignore
        self.published = 0    # ticks this process published
        self.fenced = 0       # publishes refused because the lease holds another epoch
        self.received = 0     # messages this worker's subscription received
        self.malformed = 0    # of those, rejected as malformed

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
    def publish_many(self, ticks: list[PriceTick]) -> list[PriceTick | None]:
        """Stamp and publish `ticks` in order, in as few round trips as the backend allows; per
        tick, as `publish`."""

    @abstractmethod
    def publish_heartbeat(self, body: dict) -> bool:
        """Tell every subscriber that this leader (and its exchange connection) lives."""

    @abstractmethod
    def last_prices(self) -> list[PriceTick]:
        """The last published tick per pair, for snapshots after a (re)connect."""

    @property
    @abstractmethod
    def subscribed(self) -> bool:
        """This worker's subscription is up: published ticks reach its hub."""

    @property
    @abstractmethod
    def leader_heartbeat(self) -> dict | None:
        """The last heartbeat of another process leading the deployment, None if none is heard."""

    @abstractmethod
    def heartbeat_age(self) -> float:
        """Seconds since `leader_heartbeat` arrived (0 when there is none)."""

    @abstractmethod
    def leader_alive(self) -> bool:
        """Another process leads and its heartbeat arrived recently."""

    @abstractmethod
    def status(self) -> dict:
        """State for /health."""
