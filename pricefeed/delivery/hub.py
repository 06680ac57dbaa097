"""The hub: one worker's delivery — the price book, the subscriber index and their counters, composed.

A tick from the bus (or the worker's own feed) passes the book's epoch fence, is
encoded into SSE and WebSocket bytes once (framings.py), numbered with the
subscriber index's `version` and kept as its pair's latest price (book.py). The hub
writes nothing itself: the flusher (flusher.py) periodically takes a `Batch` from the
index (subscribers.py) — what changed, and which clients to visit — and writes each
client what it has not yet been sent, one write per client per flush, the bytes shared
by every client that needs the same.

A client that cannot keep up (its socket buffer is full) is skipped until it has
drained, then sent the latest price of each pair: it holds at most the unsent rest of
one chunk (a view of the bytes every other client shared), and it never slows anyone
else. The hub itself holds what neither part does: the stream lifecycle (the client
cap, stopping, closing) and the counters (counters.py).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

import gevent.event

from pricefeed.delivery.book import BookEntry, PriceBook
from pricefeed.delivery.counters import DeliveryCounters
from pricefeed.delivery.framings import framings
from pricefeed.delivery.pace import SLOT_PERIOD, pace_in_force
from pricefeed.delivery.stream_client import SSE, StreamClient
from pricefeed.delivery.subscribers import Batch, SubscriberIndex
from pricefeed.ticks import PriceTick

__all__ = ["SLOT_PERIOD", "Batch", "BookEntry", "Hub", "HubClosed", "HubFull", "framings"]


class HubFull(Exception):
    """This worker already streams to its maximum number of clients."""


class HubClosed(Exception):
    """This worker is shutting down: no new streams."""


class TickRecorder(Protocol):
    def record(self, tick: PriceTick) -> None: ...


class Hub:
    """Indexes this worker's clients by pair, keeps the latest prices, and hands batches to the flusher."""

    def __init__(self, pairs: Iterable[str], max_clients: int | Callable[[], int], stale_after: float,
                 resume_window: int = 4096, min_update_interval: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, history: TickRecorder | None = None):
        """`max_clients`: the client cap, or a callable that says it when asked (the web layer
        knows the worker's connection pool only once gunicorn's worker serves the app, after
        the node was built). `history` (history.py): fed every tick, for sparklines."""
        pairs = tuple(pairs)
        self._max_clients = max_clients if callable(max_clients) else (lambda: max_clients)
        self.min_update_interval = min_update_interval
        self.history = history
        self.counters = DeliveryCounters()
        self.prices = PriceBook(pairs, stale_after, resume_window, clock)
        self.subscribers = SubscriberIndex(pairs, pace_in_force(None, min_update_interval), clock)
        self.book: dict[str, BookEntry] = self.prices.entries    # the same dict, for readers
        self.closed = False
        self.stopping = False                       # no new streams, open ones closing in turn (farewell.py)
        self._closed = gevent.event.Event()

    @property
    def max_clients(self) -> int:
        return self._max_clients()

    @property
    def default_pace_ms(self) -> int:
        return self.subscribers.default_pace_ms

    @property
    def stale_after(self) -> float:
        return self.prices.stale_after

    # -- clients -------------------------------------------------------------------

    def connect(self, pairs: tuple[str, ...], sock=None, pace_ms: int | None = None,
                transport: int = SSE) -> StreamClient:
        """Register a stream. With `sock`, the flusher writes to it directly (see stream_client.py).
        `pace_ms`: the pace in force (pace.pace_in_force); None: the deployment's."""
        if self.closed or self.stopping:
            raise HubClosed()
        if self.full:
            self.counters.clients_refused += 1
            raise HubFull()
        client = self.subscribers.add(pairs, sock, self.default_pace_ms if pace_ms is None else pace_ms,
                                      transport)
        self.counters.clients_direct += client.direct
        self.counters.clients_total += 1
        return client

    def resubscribe(self, client: StreamClient, pairs: tuple[str, ...]) -> None:
        """Change a live client's pairs (a WebSocket subscribe or unsubscribe)."""
        self.subscribers.resubscribe(client, pairs)

    def ready(self, client: StreamClient, direct: bool = True) -> None:
        """The client's preamble is on the wire: it may be flushed to from now on.
        `direct` False: write through WSGI even though a socket was given."""
        if client.direct and not direct:
            client.use_wsgi()
            if client in self.subscribers:
                self.counters.clients_direct -= 1
        client.ready = True
        self.catch_up(client)

    def catch_up(self, client: StreamClient) -> None:
        """The client can take more (it drained a backlog): visit it in the next flush."""
        self.subscribers.catch_up(client)

    def disconnect(self, client: StreamClient) -> None:
        client.gone = True
        # Called twice for most streams (by the response's close and by the stream's own ending).
        if self.subscribers.remove(client):
            self.counters.clients_direct -= client.direct

    @property
    def full(self) -> bool:
        return len(self.subscribers) >= self.max_clients

    @property
    def slot_count(self) -> int:
        return self.subscribers.slot_count

    @property
    def has_conflated(self) -> bool:
        return self.subscribers.has_conflated

    def clients_by_transport(self) -> dict[str, int]:
        return self.subscribers.clients_by_transport()

    def pace_groups(self) -> dict[int, int]:
        return self.subscribers.pace_groups()

    # -- lifecycle -----------------------------------------------------------------

    def close_all(self) -> None:
        """Shutting down: end every stream, and refuse new ones (a stream opened after this
        would never be closed, and would keep the worker from exiting)."""
        self.closed = True
        self._closed.set()
        self.subscribers.wake()
        for client in self.subscribers.clients():
            client.close()

    def begin_stopping(self) -> list[StreamClient]:
        """Stopping with a spread (farewell.py): refuse new streams and wake those waiting
        for admission, but keep flushing to the open ones; returns them, to be closed in turn."""
        self.stopping = True
        self._closed.set()
        return self.subscribers.clients()

    def wait_closed(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, waking early (True) if the hub closes."""
        return self._closed.wait(timeout)

    # -- ticks ---------------------------------------------------------------------

    def publish(self, tick: PriceTick) -> bool:
        """Deliver a tick from the bus. Ticks from an epoch older than the newest seen are dropped."""
        if self.prices.fenced(tick):
            self.counters.ticks_fenced += 1
            return False
        if not self.prices.advance(tick):
            return False
        self._deliver(tick, provisional=False)
        return True

    def publish_local(self, tick: PriceTick) -> bool:
        """Deliver a tick of this worker's own feed (local tier): ids `0-<n>`, outside every epoch,
        so they never collide with the bus's ids and a resume from one always reports a gap."""
        stamped = self.prices.stamp_local(tick)
        if stamped is None:
            return False
        self._deliver(stamped, provisional=True)
        return True

    def _deliver(self, tick: PriceTick, provisional: bool) -> None:
        frame = self.prices.frame(tick)
        version = self.subscribers.price(tick.pair, tick.ts, frame)
        self.prices.put(tick, frame, version, provisional)
        self.counters.ticks_delivered += 1
        if self.history is not None:
            self.history.record(tick)

    def rebase(self, epoch: int) -> None:
        """Follow a lower epoch (Redis lost its epoch counter; book.PriceBook.rebase)."""
        self.prices.rebase(epoch)

    def broadcast_status(self, body: dict) -> None:
        self.subscribers.status(framings("status", body))

    def ping_all(self) -> None:
        """Every client that is sent nothing else before its next flush gets a keep-alive comment."""
        self.subscribers.ping_all()

    # -- flushing --------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self.subscribers.version

    @property
    def unflushed_since(self) -> float | None:
        return self.subscribers.unflushed_since

    def resync(self) -> None:
        """After a failed flush: the next visits everyone with the latest price per pair."""
        self.subscribers.resync()

    def wait_for_work(self, timeout: float | None = None) -> bool:
        return self.subscribers.wait_for_work(timeout)

    def take_batch(self, slot: int | None = None) -> Batch:
        """What the next flush writes (subscribers.SubscriberIndex.take_batch)."""
        return self.subscribers.take_batch(self.book, slot)

    # -- the book, for snapshots and status ------------------------------------------

    @property
    def epoch(self) -> int:
        return self.prices.epoch

    @property
    def seq(self) -> int:
        return self.prices.seq

    @property
    def last_event_id(self) -> str:
        return self.prices.last_event_id

    @property
    def standings(self) -> dict:
        return self.prices.standings

    def latest_frames(self, pairs: Iterable[str], transport: int) -> bytes:
        return self.prices.latest_frames(pairs, transport)

    def confirm_current(self, data_age: float = 0.0, except_pairs: Iterable[str] = ()) -> None:
        self.prices.confirm_current(data_age, except_pairs)

    def is_stale(self, entry: BookEntry, now: float | None = None) -> bool:
        return self.prices.is_stale(entry, now)

    def set_standings(self, standings: dict) -> bool:
        return self.prices.set_standings(standings)

    def price_payload(self, tick: PriceTick, stale: bool = False, age_ms: int | None = None) -> dict:
        return self.prices.price_payload(tick, stale, age_ms)

    def pair_status(self, pair: str, now: float | None = None) -> str:
        return self.prices.pair_status(pair, now)

    def pair_states(self, pairs: Iterable[str]) -> dict[str, dict]:
        return self.prices.pair_states(pairs)

    def stale_pairs(self) -> list[str]:
        return self.prices.stale_pairs()

    def snapshot(self, pairs: Iterable[str]) -> list[dict]:
        return self.prices.snapshot(pairs)

    def resume(self, last_event_id: tuple[int, int], pairs: Iterable[str]) -> dict:
        return self.prices.resume(last_event_id, pairs)

    def status(self) -> dict:
        counters = self.counters
        return {
            "clients": len(self.subscribers), "max_clients": self.max_clients,
            "clients_direct": counters.clients_direct,
            "clients_total": counters.clients_total, "clients_refused": counters.clients_refused,
            "ticks_delivered": counters.ticks_delivered, "ticks_fenced": counters.ticks_fenced,
            "pace": f"every {self.default_pace_ms} ms per client" if self.default_pace_ms else "every tick",
            "pace_groups": {str(ms): count for ms, count in self.pace_groups().items()},
            "flushes": counters.flushes, "writes": counters.writes, "skipped_busy": counters.skipped_busy,
            "events_written": counters.events_written, "conflated": counters.conflated,
            "slow_client_disconnects": counters.slow_client_disconnects,
            "epoch": self.epoch, "seq": self.seq,
        }
