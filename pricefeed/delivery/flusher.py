"""The flusher: one greenlet per worker that writes what the hub has to say to every client.

Per flush it builds each distinct chunk once — keyed by the client's
subscription and how far it has been sent — and writes it to every client that
needs exactly that, one write per client. At most every YIELD_AFTER_S it lets the
event loop turn once, I/O included (poll_io), so the lease renewals, the bus reader
and new requests run between writes even during a flush to tens of thousands of
clients. Not sleep(0): that only lets other *ready* greenlets run and can come
straight back before the loop polls for I/O (gevent's own docs say so) — under a
flush that never ends, accepts, Redis replies and the exchange's messages would
wait. Nor a short positive sleep: libev blocks at least a millisecond for one.

Each flush also measures how late it ran — one clock read per flush, never one per
client: for every-tick clients, from the arrival at the hub of the oldest tick it
wrote to the end of the flush; for a conflated slot, from when the slot fell due on
the timer to the end of the flush. The load shedder (load_shedder.py) turns that lag
into "refuse new streams for now".

What it measures for the metrics costs nothing per client either: each shared chunk
knows how many events it carries and how many ticks conflation folded into it
(counted once, when the chunk is built) and counts the clients it was written to;
after the loop those are multiplied out once per chunk. Each flush records its
duration and the age of the prices it wrote (flush_record.py).
"""
from __future__ import annotations

import bisect
import logging
import operator
import os
import time
from collections import deque
from collections.abc import Callable

import gevent

from pricefeed.delivery import sse, ws_frames
from pricefeed.delivery.flush_record import FlushRecord
from pricefeed.delivery.hub import SLOT_PERIOD, Batch, Hub
from pricefeed.delivery.load_shedder import LoadShedder
from pricefeed.delivery.stream_client import SSE, WEBSOCKET, StreamClient

log = logging.getLogger(__name__)

YIELD_AFTER_S = 0.002      # the longest the flusher holds the event loop between two turns of it
YIELD_CHECK_EVERY = 64     # writes between two looks at the clock (a write is ~5-10 µs)
CRASH_PAUSE_S = 0.1
PINGS = (sse.PING, ws_frames.PING)     # by transport
TICK_WALK_LIMIT = 256     # ticks walked back per chunk before the batch's index is built
# Conflated flushes record written prices' ages per timer tick position: at most this many
# positions (the longest pace, 60 s, over the 50 ms grid).
AGE_POSITIONS = 1200
IMMEDIATE = -1            # the every-tick flushes' position


def poll_io() -> None:
    """Let the event loop turn once, I/O included, and come straight back.

    A timer already due when the loop looks makes it poll without blocking (libev waits
    0 for an expired timer). gevent.sleep(0) would come back before the poll, and a
    sleep under a millisecond blocks a full millisecond — libev's shortest epoll wait —
    which per yield added a millisecond to the flush and a wake-up to its CPU.
    """
    hub = gevent.get_hub()
    timer = hub.loop.timer(0.0)
    try:
        hub.wait(timer)
    finally:
        timer.close()


def _version(entry: tuple[int, tuple[bytes, ...]]) -> int:
    return entry[0]


class Chunk:
    """One shared chunk of a flush: its bytes, what it carries, and how many clients it was written to.

    The counts for the metrics are multiplied out once per flush (Flusher._tally), not added per write."""

    __slots__ = ("plain", "framed", "size", "events", "conflated", "writes")

    def __init__(self, plain: bytes, framed: bytes, events: int, conflated: int):
        self.plain = plain          # the transport's bytes (the WSGI path frames them itself)
        self.framed = framed        # an HTTP/1.1 chunk for SSE; for WebSocket the frames themselves
        self.size = len(framed)
        self.events = events
        self.conflated = conflated  # ticks conflation folded into it
        self.writes = 0


_UNKNOWN = Chunk(b"", b"", 0, 0)     # a steady client's chunk not looked up yet in this flush


def chunk_for(client: StreamClient, batch: Batch) -> Chunk | None:
    """The chunk this client needs now, or None. Shared per batch by every client with the same
    transport, subscription and position."""
    ping = client.ping_round < batch.ping_round
    journal = batch.journal if client.steady else None
    use_journal = journal is not None
    transport = client.transport
    key = (transport, client.subscription, -1 if use_journal else client.sent_version, ping)
    try:
        return batch.cache[key]
    except KeyError:
        pass
    status_version, status_frame = batch.status
    since = batch.journal_from if use_journal else client.sent_version
    pairs = client.pairs
    if journal is not None:
        # Kept up so far: every tick of its pairs since the previous flush, in order.
        frames = [(version, frame) for version, pair, frame in journal if pair in pairs]
    else:
        # Newly ready, or caught up after falling behind: the latest price of each pair it
        # has not been sent.
        frames = [entry for pair in pairs if (entry := batch.book.get(pair)) is not None and entry[0] > since]
    conflated = 0 if use_journal else _ticks_between(batch, since, pairs) - len(frames)
    if status_frame is not None and status_version > since:
        frames.append((status_version, status_frame))
    # In the order the hub made them, so a status never overtakes the prices before it.
    frames.sort(key=_version)
    parts = [frame[transport] for _, frame in frames]
    if ping and (transport == WEBSOCKET or not parts):
        # SSE: a comment only on a quiet stream keeps proxies from timing it out. WebSocket: a ping
        # every round, busy or not — the browser's automatic pong is what tells the server the
        # page is still there (PRICEFEED_WS_IDLE_TIMEOUT).
        parts.append(PINGS[transport])
    if parts:
        plain = b"".join(parts)
        framed = b"%X\r\n%s\r\n" % (len(plain), plain) if transport == SSE else plain
        chunk = Chunk(plain, framed, len(frames), max(0, conflated))
    else:
        chunk = None
    batch.cache[key] = chunk
    return chunk


def _ticks_between(batch: Batch, since: int, pairs: tuple[str, ...]) -> int:
    """Ticks of `pairs` the hub made after version `since` up to the batch's (a lower bound once
    the hub's tick log no longer reaches back that far). Called once per shared chunk.

    Usually `since` is recent (the previous flush of the client's slot) and a short walk back
    finds it. Past TICK_WALK_LIMIT steps the batch indexes the log once per pair, back to the
    oldest `since` asked so far, and every further chunk is a bisection: the cost never grows
    with clients times ticks.
    """
    log = batch.tick_log
    if not log or log[-1][0] <= since:
        return 0
    count = 0
    for steps, (version, pair, _) in enumerate(reversed(log)):
        if version <= since:
            return count
        if steps == TICK_WALK_LIMIT:
            break
        if version <= batch.version and pair in pairs:
            count += 1
    else:
        return count
    tick_index = batch.tick_index
    if tick_index is None or since < batch.tick_index_floor:
        tick_index = _index_ticks(batch, log, since)
    # Each pair's versions are newest first: the ones above `since` lead the list.
    return sum(bisect.bisect_left(versions, -since, key=operator.neg)
               for pair in pairs if (versions := tick_index.get(pair)))


def _index_ticks(batch: Batch, log: deque[tuple[int, str, int]], since: int) -> dict[str, list[int]]:
    """Per pair, the versions in the tick log from the batch's back to just after `since`."""
    index: dict[str, list[int]] = {}
    floor = -1
    for version, pair, _ in reversed(log):
        if version <= since:
            floor = since
            break
        if version <= batch.version:
            index.setdefault(pair, []).append(version)
    batch.tick_index, batch.tick_index_floor = index, floor
    return index


class Flusher:
    def __init__(self, hub: Hub, shedder: LoadShedder | None = None,
                 clock: Callable[[], float] = time.monotonic, min_write_spacing: float = 0.0):
        self.hub = hub
        self.shedder = shedder
        self._clock = clock        # the hub's clock: arrival stamps and flush ends must agree
        # PRICEFEED_MIN_WRITE_SPACING, given by assembly.py (0 here: tests and other callers get
        # every tick flushed at once unless they ask); see _spaced.
        self.min_write_spacing = min_write_spacing
        self._every_tick_started: float | None = None     # when the latest every-tick flush began
        self._greenlet: gevent.Greenlet | None = None
        self.lag_s = 0.0           # the latest flush's lag (see the module docstring)
        self.flushed_at: float | None = None      # when the latest flush ended
        # When what the flush under way waits for became due (None between flushes).
        self._flushing_due: float | None = None
        # When the next conflated slot falls due on the timer (None: no conflated clients).
        self._next_slot_due: float | None = None
        # Called after every flush, inside its measured lag (None: nothing). Set by the
        # fault-injection switch (web/testing.py) to slow this worker down at will.
        self.after_flush: Callable[[], None] | None = None
        self.record = FlushRecord()
        # Per flush position: the newest price whose age was recorded.
        self._aged_version: dict[int, int] = {}

    def start(self) -> None:
        if self._greenlet is None or self._greenlet.dead:   # two flushers would interleave batches
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def oldest_unwritten(self) -> float | None:
        """When the oldest frame not yet written became due (clock of the hub), or None."""
        candidates = [t for t in (self._flushing_due, self.hub.unflushed_since) if t is not None]
        if self._next_slot_due is not None and self._next_slot_due <= self._clock():
            candidates.append(self._next_slot_due)
        return min(candidates) if candidates else None

    def flush(self, batch: Batch, due_at: float | None = None, position: int = IMMEDIATE) -> int:
        """Write one batch. Returns the number of writes. With `due_at` (when the batch's oldest
        frame became due) its lag is measured and reported to the shedder. `position`: the timer
        tick's place for a conflated batch (which ticks' ages it records first)."""
        if due_at is None:
            due_at = batch.due_at
        self._flushing_due = due_at
        started = time.perf_counter()
        try:
            written = self._write(batch)
            self.record.add_flush(time.perf_counter() - started)
            if written:
                self._record_tick_ages(batch, position)
            if self.after_flush is not None:
                self.after_flush()
        finally:
            self._flushing_due = None
        now = self.flushed_at = self._clock()     # the flush's one clock read
        if due_at is not None:
            self.lag_s = max(0.0, now - due_at)
            if self.shedder is not None:
                self.shedder.observe(self.lag_s, now)
        return written

    def _write(self, batch: Batch) -> int:
        """Visit the batch's clients in order, one write each. The loop is what a flush costs per
        client, so it does as little as it can: a client that kept up finds its chunk with one
        dict lookup on one int, and the counts for the metrics are multiplied out per chunk after
        the loop, not added per write."""
        version, ping_round = batch.version, batch.ping_round
        journal = batch.journal is not None
        # Chunks of clients that kept up: (subscription, transport, ping due) as one int -> chunk.
        steady: dict[int, Chunk | None] = {}
        skipped = 0
        until_check = YIELD_CHECK_EVERY
        yield_at = time.perf_counter() + YIELD_AFTER_S
        write = os.write
        for client in batch.clients:
            if not client.ready or client.gone or client.closed:
                continue
            if client.backlog is not None or client.outbox is not None:   # busy: still writing an earlier chunk
                client.steady = False
                skipped += 1
                continue
            if journal and client.steady:
                key = client.share | (client.ping_round < ping_round)
                chunk = steady.get(key, _UNKNOWN)
                if chunk is _UNKNOWN:
                    chunk = steady[key] = chunk_for(client, batch)
            else:
                chunk = chunk_for(client, batch)
            if chunk is not None:
                fd = client.fd
                if fd < 0 or client.behind_since is not None:
                    # Through WSGI, or catching up after a backlog: StreamClient's whole path.
                    client.steady = client.deliver(chunk.framed, chunk.plain)
                else:
                    # The common case: deliver()'s direct branch written out here (keep the two
                    # alike) — the call alone was 4 % of a flush's CPU (bench.flush_cost).
                    framed = chunk.framed
                    try:
                        written = write(fd, framed)   # gevent keeps the socket non-blocking
                    except BlockingIOError:
                        written = 0
                    except OSError:
                        written = -1
                        client.drop()
                    client.steady = written == chunk.size or (written >= 0 and client.wrote(framed, written))
                chunk.writes += 1
                until_check -= 1
                if not until_check:
                    until_check = YIELD_CHECK_EVERY
                    if time.perf_counter() >= yield_at:
                        poll_io()
                        yield_at = time.perf_counter() + YIELD_AFTER_S
            else:
                client.steady = True
            client.sent_version = version
            client.ping_round = ping_round
        return self._tally(batch, skipped)

    def _tally(self, batch: Batch, skipped: int) -> int:
        """The flush's counts into the hub's, per shared chunk; returns the number of writes."""
        written = events = conflated = 0
        for chunk in batch.cache.values():
            if chunk is not None and chunk.writes:
                written += chunk.writes
                events += chunk.events * chunk.writes
                conflated += chunk.conflated * chunk.writes
        counters = self.hub.counters
        counters.flushes += 1
        counters.writes += written
        counters.events_written += events
        counters.conflated += conflated
        counters.skipped_busy += skipped
        return written

    def _record_tick_ages(self, batch: Batch, position: int) -> None:
        """The age, now that the flush is written, of each tick it wrote for the first time (per flush position).

        With a journal every tick since the previous flush went out; otherwise only the latest
        price of each pair did (the ticks before it were conflated, never written).
        """
        since = self._aged_version.get(position, 0)
        self._aged_version[position] = batch.version
        now = time.time()
        add = self.record.add_tick_age
        if batch.journal is not None and batch.tick_log is not None:
            for version, _, ts in reversed(batch.tick_log):
                if version <= batch.journal_from:
                    break
                if version <= batch.version:
                    add(max(0.0, now - ts / 1000))
            return
        for entry in self.hub.book.values():
            if since < entry.version <= batch.version:
                add(max(0.0, now - entry.tick.ts / 1000))

    def _spaced(self) -> bool:
        """Wait out the rest of PRICEFEED_MIN_WRITE_SPACING since the previous every-tick flush began.

        Writes, not Python, are what a flush costs (os.write is four fifths of a worker's
        samples): at 100 ticks/s a spacing of 20 ms halves them — for the server and for every
        client's network stack — and adds at most 20 ms to a tick. Ticks further apart than the
        spacing are never held, nor is a conflated slot that falls due meanwhile (the wait ends
        there; the spacing is bounded below the slots' 50 ms). True if it waited."""
        spacing, started = self.min_write_spacing, self._every_tick_started
        if spacing <= 0 or started is None:
            return False
        now = time.monotonic()
        wait = started + spacing - now
        if self._next_slot_due is not None:
            wait = min(wait, self._next_slot_due - now)     # a conflated slot due meanwhile is not held
        if wait <= 0:
            return False
        gevent.sleep(wait)
        return True

    def _run(self) -> None:
        """One loop for every pace: every-tick flushes as soon as there is work (and the spacing
        allows), and the conflated groups' slots on one timer of SLOT_PERIOD (pace.py)."""
        hub = self.hub
        tick = 0
        next_at = time.monotonic() + SLOT_PERIOD
        while not hub.closed:
            try:
                if hub.has_conflated:
                    self._next_slot_due = next_at
                    woken = hub.wait_for_work(max(0.0, next_at - time.monotonic()))
                else:
                    self._next_slot_due = None
                    woken = hub.wait_for_work()
                    next_at = max(next_at, time.monotonic())
                if hub.closed:
                    break
                if woken:
                    if self._spaced():
                        # What arrived while it waited rides this batch: consume its wake-up, or
                        # the loop would come straight back for an empty batch and restart the spacing.
                        hub.wait_for_work(0)
                    if hub.closed:
                        break
                    started = time.monotonic()
                    if self.flush(hub.take_batch()):
                        # Only a flush that wrote starts a spacing: a wake-up with nothing new
                        # (a WSGI client taking its chunk, a client catching up) holds no tick.
                        self._every_tick_started = started
                if hub.has_conflated and time.monotonic() >= next_at:
                    try:
                        self.flush(hub.take_batch(tick), due_at=next_at, position=tick % AGE_POSITIONS)
                    finally:
                        tick += 1         # a slot that fails must not starve the rest
                    next_at += SLOT_PERIOD
                    if next_at < time.monotonic() - SLOT_PERIOD:
                        # Fell behind (a flush took longer than a slot): carry on from now rather
                        # than flush slots back to back — that would shorten their intervals.
                        next_at = time.monotonic()
            except Exception:  # noqa: BLE001 - the flusher must outlive any one bad flush
                log.exception("flush failed; every client will be sent the latest price of its pairs")
                # Part of that batch may not have gone out: make the next one whole.
                hub.resync()
                gevent.sleep(CRASH_PAUSE_S)
