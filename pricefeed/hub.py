"""The hub: one worker's fan-out of ticks to its streaming clients.

Each client has a mailbox that holds at most the latest frame per pair
(conflation), the latest status frame and a ping flag — so a slow or stalled
browser costs a bounded amount of memory and never slows anyone else. A tick
is encoded into SSE bytes once and the same bytes object goes into every
subscribed mailbox; a client drains its whole mailbox into one write.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

import gevent.event

from . import sse
from .ticks import PriceTick


class HubFull(Exception):
    """This worker already streams to its maximum number of clients."""


class HubClosed(Exception):
    """This worker is shutting down: no new streams."""


@dataclass(slots=True)
class BookEntry:
    """The latest tick of a pair, its encoded frame, and when it was last known to be current."""

    tick: PriceTick
    frame: bytes
    confirmed_at: float        # monotonic: when this price was last known to be the current one
    # Replaced by the next tick from the bus whatever that tick's id: a price from our own
    # feed in the local tier, or one from before an epoch rebase.
    provisional: bool = False


class ClientMailbox:
    """What one streaming client has yet to be sent. Bounded by the number of pairs."""

    __slots__ = ("pairs", "_prices", "_status", "_ping", "_wakeup", "closed")

    def __init__(self, pairs: tuple[str, ...]):
        self.pairs = pairs
        self._prices: dict[str, bytes] = {}
        self._status: bytes | None = None
        self._ping = False
        self._wakeup = gevent.event.Event()
        self.closed = False

    def offer_price(self, pair: str, frame: bytes) -> None:
        self._prices[pair] = frame   # replaces an unsent older price: conflation
        self._wakeup.set()

    def offer_status(self, frame: bytes) -> None:
        self._status = frame
        self._wakeup.set()

    def offer_ping(self) -> None:
        self._ping = True
        self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    def take(self, timeout: float | None = None) -> bytes | None:
        """Block until something is pending; return it as one chunk. None once closed.

        Returns b"" if `timeout` passed with nothing pending.
        """
        self._wakeup.wait(timeout)
        self._wakeup.clear()
        if self.closed:
            return None
        parts: list[bytes] = []
        if self._status is not None:
            parts.append(self._status)
            self._status = None
        if self._prices:
            parts.extend(self._prices.values())
            self._prices = {}
        if self._ping:
            # Anything else we send resets the peer's idle timers just as well.
            if not parts:
                parts.append(sse.PING)
            self._ping = False
        return b"".join(parts)


class Hub:
    """Indexes this worker's clients by pair and delivers each tick to those who asked for it."""

    def __init__(self, pairs: Iterable[str], max_clients: int, stale_after: float,
                 resume_window: int = 4096, clock: Callable[[], float] = time.monotonic):
        self._subscribers: dict[str, set[ClientMailbox]] = {pair: set() for pair in pairs}
        self._clients: set[ClientMailbox] = set()
        self.closed = False
        self.max_clients = max_clients
        self.stale_after = stale_after
        self._clock = clock
        self.book: dict[str, BookEntry] = {}
        self.epoch = 0
        self.seq = 0
        self._recent: deque[tuple[int, str]] = deque(maxlen=max(resume_window, 1))
        self._local_seq = 0
        self.ticks_delivered = 0
        self.ticks_fenced = 0
        self.clients_total = 0
        self.clients_refused = 0

    # -- clients -------------------------------------------------------------------

    def connect(self, pairs: tuple[str, ...]) -> ClientMailbox:
        if self.closed:
            raise HubClosed()
        if len(self._clients) >= self.max_clients:
            self.clients_refused += 1
            raise HubFull()
        mailbox = ClientMailbox(pairs)
        self._clients.add(mailbox)
        for pair in pairs:
            self._subscribers[pair].add(mailbox)
        self.clients_total += 1
        return mailbox

    def disconnect(self, mailbox: ClientMailbox) -> None:
        self._clients.discard(mailbox)
        for pair in mailbox.pairs:
            self._subscribers[pair].discard(mailbox)

    def close_all(self) -> None:
        """Shutting down: end every stream, and refuse new ones (a stream opened after this
        would never be closed, and would keep the worker from exiting)."""
        self.closed = True
        for mailbox in list(self._clients):
            mailbox.close()

    # -- ticks ---------------------------------------------------------------------

    def publish(self, tick: PriceTick) -> bool:
        """Deliver a tick from the bus. Ticks from an epoch older than the newest seen are dropped."""
        if tick.epoch < self.epoch:
            self.ticks_fenced += 1
            return False
        if tick.epoch > self.epoch:
            # A new publisher: sequence numbers start again, and the resume window
            # cannot vouch for ids of the old epoch.
            self.epoch = tick.epoch
            self.seq = 0
            self._recent.clear()
        if tick.pair not in self._subscribers:
            return False
        held = self.book.get(tick.pair)
        if held is not None and not held.provisional and (held.tick.epoch, held.tick.seq) >= (tick.epoch, tick.seq):
            # Already have this one or newer (e.g. the re-read of the last prices after a reconnect).
            return False
        self.seq = max(self.seq, tick.seq)
        self._recent.append((tick.seq, tick.pair))
        self._deliver(tick, provisional=False)
        return True

    def publish_local(self, tick: PriceTick) -> bool:
        """Deliver a tick of this worker's own feed (local tier): ids `0-<n>`, outside every epoch,
        so they never collide with the bus's ids and a resume from one always reports a gap."""
        if tick.pair not in self._subscribers:
            return False
        self._local_seq += 1
        self._deliver(tick.stamped(0, self._local_seq), provisional=True)
        return True

    def rebase(self, epoch: int) -> None:
        """Follow a lower epoch: Redis lost its epoch counter (a restart without persistence).

        Only a fenced publish can carry the current lease's epoch, so a lower one heard on
        the bus proves the higher ones we hold belong to a lease that no longer exists.
        """
        self.epoch = epoch
        self.seq = 0
        self._recent.clear()
        for entry in self.book.values():
            entry.provisional = True

    def _deliver(self, tick: PriceTick, provisional: bool) -> None:
        frame = sse.event("price", tick.payload(), tick.event_id)
        self.book[tick.pair] = BookEntry(tick, frame, self._confirmed_at(tick), provisional)
        self.ticks_delivered += 1
        for mailbox in self._subscribers[tick.pair]:
            mailbox.offer_price(tick.pair, frame)

    def _confirmed_at(self, tick: PriceTick) -> float:
        # As old as the exchange says the price is: a price re-read from Redis after a
        # restart is not fresh just because it arrived now.
        age = max(0.0, time.time() - tick.ts / 1000)
        return self._clock() - age

    def confirm_current(self, data_age: float = 0.0) -> None:
        """The source is live and delivered data `data_age` seconds ago: every held price
        was still the current one then (a quiet market on a live connection is not stale)."""
        at = self._clock() - data_age
        for entry in self.book.values():
            if entry.confirmed_at < at:
                entry.confirmed_at = at

    def broadcast_status(self, body: dict) -> None:
        frame = sse.event("status", body)
        for mailbox in self._clients:
            mailbox.offer_status(frame)

    def ping_all(self) -> None:
        for mailbox in self._clients:
            mailbox.offer_ping()

    # -- snapshots -----------------------------------------------------------------

    def is_stale(self, entry: BookEntry, now: float | None = None) -> bool:
        return ((now if now is not None else self._clock()) - entry.confirmed_at) > self.stale_after

    def stale_pairs(self) -> list[str]:
        now = self._clock()
        return sorted(pair for pair, entry in self.book.items() if self.is_stale(entry, now))

    def snapshot(self, pairs: Iterable[str]) -> list[dict]:
        """The current price payload of each requested pair that has one."""
        now = self._clock()
        now_ms = int(time.time() * 1000)
        prices = []
        for pair in pairs:
            entry = self.book.get(pair)
            if entry is None:
                continue
            stale = self.is_stale(entry, now)
            prices.append(entry.tick.payload(stale=stale, age_ms=max(0, now_ms - entry.tick.ts)))
        return prices

    @property
    def last_event_id(self) -> str:
        return f"{self.epoch}-{self.seq}"

    def resume(self, last_event_id: tuple[int, int], pairs: Iterable[str]) -> dict:
        """Tell a reconnecting client whether the snapshot picks up exactly where it left off.

        No gap means: same epoch, and every tick since its last event is still in
        the recent window, so we know what it missed; the snapshot carries the
        latest price of each of its pairs, so nothing it missed is lost.
        """
        epoch, seq = last_event_id
        wanted = set(pairs)
        oldest = self._recent[0][0] if self._recent else self.seq + 1
        known = epoch == self.epoch and seq <= self.seq and seq >= oldest - 1
        missed = sum(1 for s, pair in self._recent if s > seq and pair in wanted) if known else None
        return {"last_event_id": f"{epoch}-{seq}", "gap": not known, "missed": missed}

    def status(self) -> dict:
        return {
            "clients": len(self._clients), "max_clients": self.max_clients,
            "clients_total": self.clients_total, "clients_refused": self.clients_refused,
            "ticks_delivered": self.ticks_delivered, "ticks_fenced": self.ticks_fenced,
            "epoch": self.epoch, "seq": self.seq,
        }
