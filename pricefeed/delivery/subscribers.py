"""The subscriber index: one worker's stream clients by pair and pace, and the batches that reach them.

Everything the hub has to say (a price, a status, a keep-alive round) is numbered with
the index's `version`. The flusher takes a `Batch` — what changed, and which clients to
visit — and writes each client what it has not yet been sent (flusher.py).

A pace per client (its `interval`, floored at MIN_UPDATE_INTERVAL; pace.py):
- 0 (every tick): a batch is due as soon as there is something new; prices arriving
  while a flush is under way go out together in the next one, from the journal.
- > 0 (conflated): the clients of each pace form a group, spread over slots of
  SLOT_PERIOD; the flusher's one timer takes each slot once per its group's interval,
  with the latest price of each pair.
Clients on the same pairs share one subscription number, so they share one chunk per flush.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import gevent.event

from pricefeed.delivery.pace import EVERY_TICK, PaceGroup
from pricefeed.delivery.stream_client import WEBSOCKET, StreamClient

TICK_LOG_LIMIT = 10_000     # recent (version, pair, ts) of ticks: what conflation replaced, how old
JOURNAL_LIMIT = 10_000      # frames held for one flush before clients fall back to latest-per-pair
SUBSCRIPTIONS_LIMIT = 4096  # distinct pair lists remembered (a client may order its pairs as it likes)


@dataclass(slots=True)
class Batch:
    """What one flush writes, fixed when the flush starts: ticks arriving meanwhile go in the next."""

    version: int
    book: dict[str, tuple[int, tuple[bytes, ...]]]   # pair -> (version, framings) of its latest price
    status: tuple[int, tuple[bytes, ...] | None]     # (version, framings) of the latest status event
    ping_round: int
    clients: list[StreamClient]
    # Immediate pace: every price frame since the previous flush, in order, and that flush's
    # version. None in the conflated pace, or when too many piled up (latest-per-pair then).
    journal: list[tuple[int, str, tuple[bytes, ...]]] | None = None
    journal_from: int = 0
    cache: dict = field(default_factory=dict)   # subscription and position -> shared chunk
    due_at: float | None = None                 # every-tick batch: when its oldest tick arrived (lag)
    # The hub's recent (version, pair, exchange ts) of ticks, newest last: how many ticks a chunk of
    # latest prices stands for, and how old the ticks written were (for metrics). Read within one
    # call, never across a yield.
    tick_log: deque[tuple[int, str, int]] | None = None
    tick_index: dict[str, list[int]] | None = None   # pair -> its versions in tick_log, newest first
    tick_index_floor: int = -1                         # tick_index holds every version above this


class SubscriberIndex:
    """Who is subscribed to which pair at which pace, and what the next flush owes them."""

    def __init__(self, pairs: Iterable[str], default_pace_ms: int,
                 clock: Callable[[], float] = time.monotonic):
        self._subscribers: dict[str, set[StreamClient]] = {pair: set() for pair in pairs}
        self._clients: set[StreamClient] = set()
        self.default_pace_ms = default_pace_ms
        self._clock = clock
        self.version = 0
        self._status: tuple[int, tuple[bytes, ...] | None] = (0, None)
        self.ping_round = 0
        self._groups: dict[int, PaceGroup] = {}          # conflated paces that have clients
        self._immediate: set[StreamClient] = set()       # every-tick clients
        self._immediate_subscribers: dict[str, set[StreamClient]] = {pair: set() for pair in self._subscribers}
        self._journal: list[tuple[int, str, tuple[bytes, ...]]] | None = None
        self._flushed_version = 0
        self.unflushed_since: float | None = None   # arrival of the oldest tick not yet in a batch
        self._tick_log: deque[tuple[int, str, int]] = deque(maxlen=TICK_LOG_LIMIT)
        self._pending: set[StreamClient] = set()
        self._full_pass = False
        self._work = gevent.event.Event()
        self._subscriptions: dict[tuple[str, ...], tuple[int, tuple[str, ...]]] = {}
        self._subscription_count = 0

    # -- clients -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._clients)

    def __contains__(self, client: StreamClient) -> bool:
        return client in self._clients

    def clients(self) -> list[StreamClient]:
        return list(self._clients)

    def add(self, pairs: tuple[str, ...], sock, pace_ms: int, transport: int) -> StreamClient:
        """A new client on `pairs` at `pace_ms`, starting from what has been said so far."""
        subscription, pairs = self._subscription(pairs)
        client = StreamClient(pairs, subscription, 0, self.version, self.ping_round, sock, pace_ms, transport)
        self._clients.add(client)
        if pace_ms == EVERY_TICK:
            self._immediate.add(client)
        else:
            group = self._groups.get(pace_ms)
            if group is None:
                group = self._groups[pace_ms] = PaceGroup(pace_ms)
                self._work.set()          # a flusher idle without conflated clients starts its timer
            client.slot = group.add(client)
        self._index(client, pairs)
        return client

    def remove(self, client: StreamClient) -> bool:
        """Forget `client`; False if it was not (or no longer) here."""
        if client not in self._clients:
            return False
        self._clients.remove(client)
        if client.pace_ms == EVERY_TICK:
            self._immediate.discard(client)
        else:
            group = self._groups.get(client.pace_ms)
            if group is not None:
                group.remove(client, client.slot)
                if not group.size:
                    del self._groups[client.pace_ms]   # the set of groups only holds paces in use
        self._pending.discard(client)
        self._unindex(client)
        return True

    def resubscribe(self, client: StreamClient, pairs: tuple[str, ...]) -> None:
        """Change a live client's pairs (a WebSocket subscribe or unsubscribe)."""
        if client not in self._clients:
            return
        self._unindex(client)
        client.subscribe(*self._subscription(pairs))
        self._index(client, client.pairs)

    def catch_up(self, client: StreamClient) -> None:
        """The client can take more (it drained a backlog): visit it in the next flush."""
        if client.pace_ms == EVERY_TICK and not client.gone:
            self._pending.add(client)
            self._work.set()

    def _index(self, client: StreamClient, pairs: tuple[str, ...]) -> None:
        for pair in pairs:
            self._subscribers[pair].add(client)
            if client.pace_ms == EVERY_TICK:
                self._immediate_subscribers[pair].add(client)

    def _unindex(self, client: StreamClient) -> None:
        for pair in client.pairs:
            self._subscribers[pair].discard(client)
            self._immediate_subscribers[pair].discard(client)

    def _subscription(self, pairs: tuple[str, ...]) -> tuple[int, tuple[str, ...]]:
        """A number per distinct set of pairs, so clients on the same pairs share one chunk per
        flush (and one tuple). Bounded: past SUBSCRIPTIONS_LIMIT a client gets a number of its own."""
        known = self._subscriptions.get(pairs)
        if known is None:
            self._subscription_count += 1
            known = (self._subscription_count, pairs)
            if len(self._subscriptions) < SUBSCRIPTIONS_LIMIT:
                self._subscriptions[pairs] = known
        return known

    @property
    def slot_count(self) -> int:
        """Slots of the deployment's default pace (1 for every tick)."""
        return PaceGroup(self.default_pace_ms).slot_count if self.default_pace_ms else 1

    def clients_by_transport(self) -> dict[str, int]:
        """Open streams per transport, for the metrics (read once a second, not per event)."""
        websocket = sum(1 for client in self._clients if client.transport == WEBSOCKET)
        return {"sse": len(self._clients) - websocket, "ws": websocket}

    def pace_groups(self) -> dict[int, int]:
        """Clients per pace in ms (0: every tick), for /health and the benches."""
        groups = {ms: group.size for ms, group in sorted(self._groups.items()) if group.size}
        if self._immediate:
            groups = {EVERY_TICK: len(self._immediate), **groups}
        return groups

    @property
    def has_conflated(self) -> bool:
        return bool(self._groups)

    # -- what there is to say ------------------------------------------------------

    def price(self, pair: str, ts: int, frame: tuple[bytes, ...]) -> int:
        """A new latest price of `pair` (exchange time `ts`): journaled for every-tick clients.
        Returns its version."""
        self.version += 1
        self._tick_log.append((self.version, pair, ts))
        if self._immediate:
            if self.unflushed_since is None:
                self.unflushed_since = self._clock()   # one clock read per batch, for the lag
            if self._journal is not None:
                self._journal.append((self.version, pair, frame))
                if len(self._journal) > JOURNAL_LIMIT:
                    self._journal = None    # the flusher is far behind: send latest-per-pair instead
            self._work.set()
        else:
            self._journal = None            # nobody to journal for: a newcomer starts from the book
        return self.version

    def status(self, frame: tuple[bytes, ...]) -> None:
        """A new status event, for every client."""
        self.version += 1
        self._status = (self.version, frame)
        self._full_pass = True
        self._work.set()

    def ping_all(self) -> None:
        """Every client that is sent nothing else before its next flush gets a keep-alive comment."""
        self.ping_round += 1
        self._full_pass = True
        self._work.set()

    def wake(self) -> None:
        """Wake the flusher (the hub closes)."""
        self._work.set()

    # -- flushing --------------------------------------------------------------------

    def resync(self) -> None:
        """After a failed flush: the next visits everyone with the latest price per pair."""
        self._journal = None
        self._full_pass = True
        self._work.set()

    def wait_for_work(self, timeout: float | None = None) -> bool:
        """Block until there is something to flush for every-tick clients, a conflated group
        appeared, or the hub closed (True); False after `timeout`."""
        ready = self._work.wait(timeout)
        self._work.clear()
        return ready

    def take_batch(self, book: dict, slot: int | None = None) -> Batch:
        """What the next flush writes, with the latest prices of `book` (pair -> BookEntry).
        `slot` None: the every-tick clients that subscribe to what changed since the previous
        such flush (all of them after a status or ping). `slot` t: the conflated clients due at
        timer tick t — slot t mod slot_count of every group."""
        latest = {pair: (entry.version, entry.frame) for pair, entry in book.items()}
        batch = Batch(self.version, latest, self._status, self.ping_round, [], tick_log=self._tick_log)
        if slot is not None:
            for group in self._groups.values():
                batch.clients.extend(group.due(slot))
            return batch
        journal = self._journal
        self._journal = []
        batch.journal, batch.journal_from = journal, self._flushed_version
        batch.due_at, self.unflushed_since = self.unflushed_since, None
        self._flushed_version = self.version
        pending, self._pending = self._pending, set()
        full, self._full_pass = self._full_pass, False
        dirty = {pair for _, pair, _ in journal} if journal is not None else None
        if full or dirty is None or len(dirty) > 1:
            batch.clients = list(self._immediate)
        elif dirty:
            subscribers = self._immediate_subscribers[next(iter(dirty))]
            batch.clients = list(subscribers)
            batch.clients.extend(client for client in pending if client not in subscribers)
        else:
            batch.clients = list(pending)
        return batch

