"""The hub: one worker's latest prices, and who is subscribed to which.

A tick from the bus (or the worker's own feed) is encoded into SSE bytes once,
numbered with the hub's `version` (a counter of everything the hub has had to
say) and kept as its pair's latest price. The hub writes nothing itself: the
flusher (flusher.py) periodically takes a `Batch` — what changed, and which
clients to visit — and writes each client what it has not yet been sent, one
write per client per flush, the bytes shared by every client that needs the same.

A pace per client (its `interval`, floored at MIN_UPDATE_INTERVAL; pace.py):
- 0 (every tick): a flush runs as soon as there is something new; ticks that arrive
  while a flush is under way go out together in the next one. A client that keeps
  up gets every tick, from the batch's journal.
- > 0 (conflated): the clients of each pace form a group, spread over slots of
  SLOT_PERIOD; one hub-level timer flushes each slot once per its group's interval —
  no per-client or per-group timers — with the latest price of each pair that changed
  since that client's last write. The groups due at one timer tick share one batch.
Every event is framed once per transport (SSE, WebSocket); chunks are shared by the
clients of one transport, subscription and position.
A client that cannot keep up (its socket buffer is full) is skipped until it has
drained, then sent the latest price of each pair: it holds at most the unsent rest of
one chunk (a view of the bytes every other client shared), and it never slows anyone
else.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable, Iterable

import gevent.event

from pricefeed.delivery.book import Batch, BookEntry, framings
from pricefeed.delivery.pace import EVERY_TICK, SLOT_PERIOD, PaceGroup, pace_in_force
from pricefeed.delivery.stream_client import SSE, WEBSOCKET, StreamClient
from pricefeed.ticks import PriceTick

__all__ = ["SLOT_PERIOD", "Batch", "BookEntry", "Hub", "HubClosed", "HubFull", "framings"]
LISTED = "listed"           # exchange/catalogue.LISTED: the hub needs the word, not the module
TICK_LOG_LIMIT = 10_000     # recent (version, pair, ts) of ticks: what conflation replaced, how old
JOURNAL_LIMIT = 10_000      # frames held for one flush before clients fall back to latest-per-pair
SUBSCRIPTIONS_LIMIT = 4096  # distinct pair lists remembered (a client may order its pairs as it likes)


class HubFull(Exception):
    """This worker already streams to its maximum number of clients."""


class HubClosed(Exception):
    """This worker is shutting down: no new streams."""


class Hub:
    """Indexes this worker's clients by pair, keeps the latest prices, and hands batches to the flusher."""

    def __init__(self, pairs: Iterable[str], max_clients: int, stale_after: float,
                 resume_window: int = 4096, min_update_interval: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self._subscribers: dict[str, set[StreamClient]] = {pair: set() for pair in pairs}
        self._clients: set[StreamClient] = set()
        self.closed = False
        self.max_clients = max_clients
        self.stale_after = stale_after
        self.min_update_interval = min_update_interval
        self._clock = clock
        self.book: dict[str, BookEntry] = {}
        self.epoch = 0
        self.seq = 0
        self._recent: deque[tuple[int, str]] = deque(maxlen=max(resume_window, 1))
        self._local_seq = 0
        # What the flusher needs.
        self.version = 0
        self._status: tuple[int, bytes | None] = (0, None)
        self.ping_round = 0
        self.default_pace_ms = pace_in_force(None, min_update_interval)
        self._groups: dict[int, PaceGroup] = {}          # conflated paces that have clients
        self._immediate: set[StreamClient] = set()       # every-tick clients
        self._immediate_subscribers: dict[str, set[StreamClient]] = {pair: set() for pair in self._subscribers}
        self._journal: list[tuple[int, str, tuple[bytes, ...]]] | None = None
        self._flushed_version = 0
        self.unflushed_since: float | None = None   # arrival of the oldest tick not yet in a batch
        self._tick_log: deque[tuple[int, str, int]] = deque(maxlen=TICK_LOG_LIMIT)
        self.events_written = 0
        self.conflated = 0
        self.slow_client_disconnects = 0
        self.stopping = False                       # no new streams, open ones closing in turn (farewell.py)
        self._pending: set[StreamClient] = set()
        self._full_pass = False
        self._work = gevent.event.Event()
        self._closed = gevent.event.Event()
        self._subscriptions: dict[tuple[str, ...], tuple[int, tuple[str, ...]]] = {}
        self._subscription_count = 0
        self.history = None       # a PriceHistory (history.py) the node attaches, fed every tick
        # pair -> how the exchange lists it (exchange/catalogue.Standing: `listing` "listed",
        # "halted" or "unlisted", the traded `symbol`, `quote` when aliased), set by the node.
        self.standings: dict = {}
        # Counters for /health.
        self.ticks_delivered = 0
        self.ticks_fenced = 0
        self.clients_total = 0
        self.clients_refused = 0
        self.clients_direct = 0
        self.flushes = 0
        self.writes = 0
        self.skipped_busy = 0

    # -- clients -------------------------------------------------------------------

    def connect(self, pairs: tuple[str, ...], sock=None, pace_ms: int | None = None,
                transport: int = SSE) -> StreamClient:
        """Register a stream. With `sock`, the flusher writes to it directly (see stream_client.py).
        `pace_ms`: the pace in force (pace.pace_in_force); None: the deployment's."""
        if self.closed or self.stopping:
            raise HubClosed()
        if len(self._clients) >= self.max_clients:
            self.clients_refused += 1
            raise HubFull()
        pace_ms = self.default_pace_ms if pace_ms is None else pace_ms
        subscription, pairs = self._subscription(pairs)
        client = StreamClient(pairs, subscription, 0, self.version, self.ping_round, sock, pace_ms, transport)
        self._clients.add(client)
        self.clients_direct += client.direct
        if pace_ms == EVERY_TICK:
            self._immediate.add(client)
        else:
            group = self._groups.get(pace_ms)
            if group is None:
                group = self._groups[pace_ms] = PaceGroup(pace_ms)
                self._work.set()          # a flusher idle without conflated clients starts its timer
            client.slot = group.add(client)
        self._index(client, pairs)
        self.clients_total += 1
        return client

    def _index(self, client: StreamClient, pairs: tuple[str, ...]) -> None:
        for pair in pairs:
            self._subscribers[pair].add(client)
            if client.pace_ms == EVERY_TICK:
                self._immediate_subscribers[pair].add(client)

    def _unindex(self, client: StreamClient) -> None:
        for pair in client.pairs:
            self._subscribers[pair].discard(client)
            self._immediate_subscribers[pair].discard(client)

    def resubscribe(self, client: StreamClient, pairs: tuple[str, ...]) -> None:
        """Change a live client's pairs (a WebSocket subscribe or unsubscribe)."""
        if client not in self._clients:
            return
        self._unindex(client)
        client.subscription, client.pairs = self._subscription(pairs)
        self._index(client, client.pairs)

    def latest_frames(self, pairs: Iterable[str], transport: int) -> bytes:
        """The latest price event of each of `pairs` that has one, in one framing, in id order."""
        entries = sorted((entry.version, entry.frame[transport])
                         for pair in pairs if (entry := self.book.get(pair)) is not None)
        return b"".join(frame for _, frame in entries)

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

    def ready(self, client: StreamClient, direct: bool = True) -> None:
        """The client's preamble is on the wire: it may be flushed to from now on.
        `direct` False: write through WSGI even though a socket was given."""
        if client.direct and not direct:
            client.use_wsgi()
            if client in self._clients:
                self.clients_direct -= 1
        client.ready = True
        self.catch_up(client)

    def catch_up(self, client: StreamClient) -> None:
        """The client can take more (it drained a backlog): visit it in the next flush."""
        if client.pace_ms == EVERY_TICK and not client.gone:
            self._pending.add(client)
            self._work.set()

    def disconnect(self, client: StreamClient) -> None:
        client.gone = True
        if client not in self._clients:
            return    # called again: by the response's close and by the stream's own ending
        self.clients_direct -= client.direct
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

    def close_all(self) -> None:
        """Shutting down: end every stream, and refuse new ones (a stream opened after this
        would never be closed, and would keep the worker from exiting)."""
        self.closed = True
        self._closed.set()
        self._work.set()
        for client in list(self._clients):
            client.close()

    def begin_stopping(self) -> list[StreamClient]:
        """Stopping with a spread (farewell.py): refuse new streams and wake those waiting
        for admission, but keep flushing to the open ones; returns them, to be closed in turn."""
        self.stopping = True
        self._closed.set()
        return list(self._clients)

    def wait_closed(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, waking early (True) if the hub closes."""
        return self._closed.wait(timeout)

    @property
    def full(self) -> bool:
        return len(self._clients) >= self.max_clients

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
        frame = framings("price", self.price_payload(tick), tick.event_id)
        self.version += 1
        self.book[tick.pair] = BookEntry(tick, frame, self._confirmed_at(tick), self.version, provisional)
        self.ticks_delivered += 1
        self._tick_log.append((self.version, tick.pair, tick.ts))
        if self.history is not None:
            self.history.record(tick)
        if self._immediate:
            if self.unflushed_since is None:
                self.unflushed_since = self._clock()   # one clock read per batch, for the lag
            if self._journal is not None:
                self._journal.append((self.version, tick.pair, frame))
                if len(self._journal) > JOURNAL_LIMIT:
                    self._journal = None    # the flusher is far behind: send latest-per-pair instead
            self._work.set()
        else:
            self._journal = None            # nobody to journal for: a newcomer starts from the book

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

    def take_batch(self, slot: int | None = None) -> Batch:
        """What the next flush writes. `slot` None: the every-tick clients that subscribe to what
        changed since the previous such flush (all of them after a status or ping). `slot` t: the
        conflated clients due at timer tick t — slot t mod slot_count of every group."""
        book = {pair: (entry.version, entry.frame) for pair, entry in self.book.items()}
        batch = Batch(self.version, book, self._status, self.ping_round, [], tick_log=self._tick_log)
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

    def _confirmed_at(self, tick: PriceTick) -> float:
        # As old as the exchange says the price is: a price re-read from Redis after a
        # restart is not fresh just because it arrived now.
        age = max(0.0, time.time() - tick.ts / 1000)
        return self._clock() - age

    def confirm_current(self, data_age: float = 0.0, except_pairs: Iterable[str] = ()) -> None:
        """The source is live and delivered data `data_age` seconds ago: every held price
        was still the current one then (a quiet market on a live connection is not stale).
        `except_pairs` are on an exchange connection that is down: they are not confirmed."""
        at = self._clock() - data_age
        skipped = set(except_pairs)
        for pair, entry in self.book.items():
            if entry.confirmed_at < at and pair not in skipped:
                entry.confirmed_at = at

    def broadcast_status(self, body: dict) -> None:
        self.version += 1
        self._status = (self.version, framings("status", body))
        self._full_pass = True
        self._work.set()

    def ping_all(self) -> None:
        """Every client that is sent nothing else before its next flush gets a keep-alive comment."""
        self.ping_round += 1
        self._full_pass = True
        self._work.set()

    # -- snapshots -----------------------------------------------------------------

    def is_stale(self, entry: BookEntry, now: float | None = None) -> bool:
        """Not known to be the current price: too old, or its market halted or unlisted (a
        halted market's last price is never fresh, however live the connection)."""
        if self._listing(entry.tick.pair) != LISTED:
            return True
        return ((now if now is not None else self._clock()) - entry.confirmed_at) > self.stale_after

    # -- what the exchange lists -----------------------------------------------------

    def _listing(self, pair: str) -> str:
        standing = self.standings.get(pair)
        return standing.listing if standing is not None else LISTED

    def set_standings(self, standings: dict) -> bool:
        """Take the catalogue's view of each pair; True if any pair's listing, symbol or quote
        changed. Held prices are framed again, so a catch-up carries the status in force."""
        if standings == self.standings:
            return False
        self.standings = dict(standings)
        for entry in self.book.values():
            entry.frame = framings("price", self.price_payload(entry.tick), entry.tick.event_id)
        return True

    def price_payload(self, tick: PriceTick, stale: bool = False, age_ms: int | None = None) -> dict:
        standing = self.standings.get(tick.pair)
        listing = standing.listing if standing is not None else LISTED
        status = listing if listing != LISTED else ("stale" if stale else "live")
        return tick.payload(stale or listing != LISTED, age_ms, status,
                            standing.quote if standing is not None else None)

    def pair_status(self, pair: str, now: float | None = None) -> str:
        """live | stale | halted | unlisted. A listed pair with no price yet is stale."""
        listing = self._listing(pair)
        if listing != LISTED:
            return listing
        entry = self.book.get(pair)
        return "stale" if entry is None or self.is_stale(entry, now) else "live"

    def pair_states(self, pairs: Iterable[str]) -> dict[str, dict]:
        """Per pair, priced or not: its status, the symbol it trades as and (if aliased) its quote."""
        now = self._clock()
        states = {}
        for pair in pairs:
            standing = self.standings.get(pair)
            entry = self.book.get(pair)
            state = {"status": self.pair_status(pair, now),
                     "symbol": standing.symbol if standing is not None else (entry.tick.symbol if entry else None)}
            if standing is not None and standing.quote is not None:
                state["quote"] = standing.quote
            states[pair] = state
        return states

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
            prices.append(self.price_payload(entry.tick, stale, max(0, now_ms - entry.tick.ts)))
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
            "clients_direct": self.clients_direct,
            "clients_total": self.clients_total, "clients_refused": self.clients_refused,
            "ticks_delivered": self.ticks_delivered, "ticks_fenced": self.ticks_fenced,
            "pace": f"every {self.default_pace_ms} ms per client" if self.default_pace_ms else "every tick",
            "pace_groups": {str(ms): count for ms, count in self.pace_groups().items()},
            "flushes": self.flushes, "writes": self.writes, "skipped_busy": self.skipped_busy,
            "events_written": self.events_written, "conflated": self.conflated,
            "slow_client_disconnects": self.slow_client_disconnects,
            "epoch": self.epoch, "seq": self.seq,
        }

