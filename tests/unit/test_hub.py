"""The hub and the flusher: what reaches a client's socket, per flush.

Clients here are real sockets (socket pairs): the flusher writes HTTP/1.1 chunks
to one end and the test reads and de-chunks the other, as a browser would.
"""
from __future__ import annotations

import re
import socket
import time

import gevent
import gevent.socket
import pytest

from pricefeed.delivery import flusher as flusher_module
from pricefeed.delivery import sse
from pricefeed.delivery.flusher import Flusher, chunk_for
from pricefeed.delivery.hub import Hub, HubClosed, HubFull
from pricefeed.delivery.stream_client import StreamClient
from pricefeed.ticks import PriceTick


class ManualClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def tick(pair="BTC/USD", price="100.00", epoch=1, seq=1, ts=1_700_000_000_000):
    return PriceTick(pair, pair.replace("/USD", "USDT"), price, ts, "binance", None, epoch, seq)


class Wire:
    """One client of the hub over a real socket pair, read from the browser's end."""

    def __init__(self, hub: Hub, pairs: tuple[str, ...], direct: bool = True, ready: bool = True):
        self.server_end, self.browser_end = socket.socketpair()
        self.server_end.setblocking(False)      # as gevent keeps every socket
        self.client = hub.connect(pairs, self.server_end if direct else None)
        if ready:
            hub.ready(self.client)
        self._raw = b""

    def chunks(self) -> list[bytes]:
        """The HTTP/1.1 chunks received since the last call (each is one write of the flusher)."""
        self.browser_end.setblocking(False)
        try:
            while True:
                data = self.browser_end.recv(1 << 20)
                if not data:
                    break
                self._raw += data
        except BlockingIOError:
            pass
        chunks = []
        while self._raw:
            size_line, sep, rest = self._raw.partition(b"\r\n")
            size = int(size_line, 16)
            if not sep or len(rest) < size + 2:
                break
            assert rest[size:size + 2] == b"\r\n", "malformed chunk framing"
            chunks.append(rest[:size])
            self._raw = rest[size + 2:]
        return chunks

    def body(self) -> bytes:
        return b"".join(self.chunks())


def prices(body: bytes) -> list[str]:
    return [p.decode() for p in re.findall(rb'"price":"([^"]+)"', body)]


def outbox_prices(client: StreamClient) -> list[str]:
    """The prices in the chunk the flusher left for a WSGI-path client's greenlet to yield."""
    assert client.outbox is not None
    return prices(client.outbox)


def flush(hub: Hub, slot: int | None = None) -> int:
    return Flusher(hub).flush(hub.take_batch(slot))


# -- every tick, one write per flush -------------------------------------------------------

def test_a_client_that_keeps_up_gets_every_tick_in_order_in_one_write_per_flush():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD", "ETH/USD"))
    flush(hub)                      # becomes steady: nothing missed since its snapshot
    for seq, (pair, price) in enumerate([("BTC/USD", "1.00"), ("BTC/USD", "2.00"),
                                         ("ETH/USD", "3.00"), ("BTC/USD", "4.00")], start=1):
        hub.publish(tick(pair, price, seq=seq))
    assert flush(hub) == 1
    chunks = wire.chunks()
    assert len(chunks) == 1
    assert prices(chunks[0]) == ["1.00", "2.00", "3.00", "4.00"]
    assert re.findall(rb"id: (\S+)", chunks[0]) == [b"1-1", b"1-2", b"1-3", b"1-4"]


def test_clients_on_the_same_pairs_share_one_chunk_per_flush():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    a, b = Wire(hub, ("BTC/USD",)), Wire(hub, ("BTC/USD",))
    other = Wire(hub, ("ETH/USD",))
    flush(hub)
    hub.publish(tick(price="7.00"))
    batch = hub.take_batch()
    assert chunk_for(a.client, batch) is chunk_for(b.client, batch)
    assert chunk_for(other.client, batch) is None
    Flusher(hub).flush(batch)
    assert prices(a.body()) == prices(b.body()) == ["7.00"]
    assert other.body() == b""


def test_clients_only_get_the_pairs_they_asked_for():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("ETH/USD",))
    flush(hub)
    hub.publish(tick("BTC/USD"))
    flush(hub)
    assert wire.body() == b""


def test_a_client_not_yet_ready_is_not_written_to_and_then_catches_up_from_its_snapshot():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    hub.publish(tick(price="1.00", seq=1))            # in its snapshot
    wire = Wire(hub, ("BTC/USD",), ready=False)
    hub.publish(tick(price="2.00", seq=2))            # after its snapshot, before its preamble was sent
    flush(hub)
    assert wire.body() == b""
    hub.ready(wire.client)
    flush(hub)
    assert prices(wire.body()) == ["2.00"]


def test_a_long_flush_lets_the_event_loop_read_sockets_between_writes(monkeypatch):
    """A flush to many clients turns the event loop now and then, I/O included: the bus reader,
    accepts and lease renewals must not wait for the last write."""
    monkeypatch.setattr(flusher_module, "YIELD_AFTER_S", 0.0)     # turn it at every clock check
    hub = Hub(["BTC/USD"], max_clients=1000, stale_after=10)
    wires = [Wire(hub, ("BTC/USD",)) for _ in range(4 * flusher_module.YIELD_CHECK_EVERY)]
    flush(hub)
    hub.publish(tick(price="1.00"))
    batch = hub.take_batch()
    events: list[str] = []
    inbound, outbound = gevent.socket.socketpair()     # cooperative: its recv waits in the event loop
    reader = gevent.spawn(lambda: events.append(f"read {inbound.recv(16).decode()}"))
    gevent.sleep(0.01)                 # the reader waits on its socket
    outbound.send(b"bus")              # readable before the flush starts
    assert Flusher(hub).flush(batch) == len(wires)
    events.append("flush done")
    reader.join(timeout=5)
    assert events == ["read bus", "flush done"]
    assert all(prices(wire.body()) == ["1.00"] for wire in wires)
    inbound.close()
    outbound.close()


# -- slow and departed clients ---------------------------------------------------------------

def test_a_client_that_stops_reading_is_skipped_and_then_sent_only_the_latest_per_pair():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    slow = Wire(hub, ("BTC/USD", "ETH/USD"))
    fast = Wire(hub, ("BTC/USD", "ETH/USD"))
    slow.server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    flush(hub)
    seq = 0
    while slow.client.backlog is None:                # until its socket buffer is full
        seq += 1
        hub.publish(tick(price=f"{seq}.00", seq=seq))
        flush(hub)
        fast.chunks()
        assert seq < 100_000
    assert slow.client.busy and not slow.client.steady
    for _ in range(50):                               # meanwhile: skipped, and nobody else waits
        seq += 1
        hub.publish(tick(price=f"{seq}.00", seq=seq))
        flush(hub)
    assert prices(fast.body())[-1] == f"{seq}.00"
    assert hub.counters.skipped_busy >= 50
    hub.publish(tick("ETH/USD", "0.50", seq=seq + 1))
    # The client's greenlet finishes the backlog (views._stream_events does this) ...
    received = slow.body()
    slow.browser_end.setblocking(True)
    slow.server_end.setblocking(True)
    reader = gevent.spawn(lambda: slow.browser_end.recv(1 << 22))
    slow.server_end.sendall(slow.client.backlog)
    slow.client.backlog = None
    slow._raw += reader.get(timeout=5)
    slow.server_end.setblocking(False)
    hub.catch_up(slow.client)
    flush(hub)
    caught_up = slow.chunks()
    # ... and the next flush brings it the latest price of each pair, once, ids still increasing.
    assert prices(caught_up[-1]) == [f"{seq}.00", "0.50"]
    ids = [int(i.split(b"-")[1]) for i in re.findall(rb"id: (\S+)", received + b"".join(caught_up))]
    assert ids == sorted(ids) and len(ids) == len(set(ids))


def test_a_client_whose_peer_is_gone_is_dropped_without_disturbing_the_others():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    gone, alive = Wire(hub, ("BTC/USD",)), Wire(hub, ("BTC/USD",))
    flush(hub)
    gone.browser_end.close()
    hub.publish(tick(price="3.00"))
    flush(hub)
    assert gone.client.gone
    assert prices(alive.body()) == ["3.00"]


def test_the_wsgi_path_hands_chunks_to_the_client_greenlet_and_skips_it_until_taken():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",), direct=False)
    flush(hub)
    hub.publish(tick(price="1.00", seq=1))
    flush(hub)
    assert outbox_prices(wire.client) == ["1.00"]
    hub.publish(tick(price="2.00", seq=2))
    hub.publish(tick(price="3.00", seq=3))
    flush(hub)                                        # still holding the first: skipped
    assert outbox_prices(wire.client) == ["1.00"]
    wire.client.outbox = None                         # the greenlet yielded it
    hub.catch_up(wire.client)
    flush(hub)
    assert outbox_prices(wire.client) == ["3.00"]     # conflated: it fell behind


# -- the conflated pace ----------------------------------------------------------------------

def test_conflated_pace_spreads_clients_over_slots_and_sends_each_at_most_one_price_per_pair():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=100, stale_after=10, min_update_interval=0.2)
    assert hub.slot_count == 4
    wires = [Wire(hub, ("BTC/USD", "ETH/USD")) for _ in range(8)]
    assert sorted(w.client.slot for w in wires) == [0, 0, 1, 1, 2, 2, 3, 3]
    for seq in range(1, 21):
        hub.publish(tick("BTC/USD" if seq % 2 else "ETH/USD", f"{seq}.00", seq=seq))
    flush(hub, slot=1)
    for wire in wires:
        body = wire.body()
        if wire.client.slot == 1:
            assert prices(body) == ["19.00", "20.00"]   # the latest per pair, in id order
        else:
            assert body == b""


def test_conflated_pace_flusher_writes_each_client_at_most_once_per_interval():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10, min_update_interval=0.2)
    wire = Wire(hub, ("BTC/USD",))
    flusher = Flusher(hub)
    flusher.start()
    try:
        started = time.monotonic()
        seq = 0
        while time.monotonic() - started < 1.0:       # 100 ticks/s for 1 s
            seq += 1
            hub.publish(tick(price=f"{seq}.00", seq=seq))
            gevent.sleep(0.01)
        chunks: list[bytes] = []
        deadline = time.monotonic() + 2
        while not (chunks and prices(chunks[-1]) == [f"{seq}.00"]):   # the last price arrives ...
            assert time.monotonic() < deadline, "the last price never arrived"
            gevent.sleep(0.02)                     # (the flusher is a greenlet: let it run)
            chunks += [c for c in wire.chunks() if c != sse.PING]
        assert 3 <= len(chunks) <= 8               # ... in ~5 writes over the second, not ~100
        assert all(c.count(b"event: price") == 1 for c in chunks)
    finally:
        flusher.stop()


def _every_tick_run(spacing: float, ticks: int, gap: float) -> tuple[list[bytes], list[float], float]:
    """The flusher's own loop with PRICEFEED_MIN_WRITE_SPACING `spacing`, `ticks` published `gap`
    apart to one every-tick client: the chunks it read, each price's delay to its arrival, and
    how long the publishing took (a busy machine stretches the gaps)."""
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    flusher = Flusher(hub, min_write_spacing=spacing)
    flusher.start()
    chunks: list[bytes] = []
    sent_at: dict[str, float] = {}
    delays: list[float] = []

    def read() -> None:
        for chunk in wire.chunks():
            if chunk == sse.PING:
                continue
            chunks.append(chunk)
            delays.extend(time.monotonic() - sent_at[price] for price in prices(chunk))
    try:
        flush(hub)                                  # the client is steady from here on
        wire.chunks()
        started = time.monotonic()
        for seq in range(1, ticks + 1):
            sent_at[f"{seq}.00"] = time.monotonic()
            hub.publish(tick(price=f"{seq}.00", seq=seq))
            gevent.sleep(gap)
            read()
        publishing = time.monotonic() - started
        deadline = time.monotonic() + 2
        while len(delays) < ticks:
            assert time.monotonic() < deadline, f"{len(delays)} of {ticks} prices arrived"
            gevent.sleep(0.005)
            read()
    finally:
        flusher.stop()
    return chunks, delays, publishing


def test_min_write_spacing_folds_fast_ticks_into_fewer_writes_and_sends_every_one_in_order():
    chunks, delays, publishing = _every_tick_run(spacing=0.05, ticks=40, gap=0.005)   # 200 ticks/s, 0.2 s
    assert [p for chunk in chunks for p in prices(chunk)] == [f"{seq}.00" for seq in range(1, 41)]
    most = int(publishing / 0.05) + 2          # one flush per 50 ms while ticks came, and the last
    assert len(chunks) <= most, f"{len(chunks)} writes for 40 ticks in {publishing:.2f} s"
    # Each tick waits at most the spacing (plus the loop's turn on a busy machine).
    assert max(delays) < 0.05 + 0.5


def test_min_write_spacing_never_holds_ticks_that_come_further_apart_than_it():
    chunks, _, _ = _every_tick_run(spacing=0.01, ticks=8, gap=0.04)
    assert len(chunks) == 8 and all(len(prices(chunk)) == 1 for chunk in chunks)


def _wait_for(condition, what: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        gevent.sleep(0.002)


@pytest.fixture
def spaced():
    """A steady every-tick client and the flusher's own loop with a 0.5 s spacing: given to the
    Flusher directly (the setting stops at 0.04 s), long enough that a busy machine's stalls do
    not reorder the steps of a test."""
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    flusher = Flusher(hub, min_write_spacing=0.5)
    flush(hub)
    flusher.start()
    yield hub, wire
    flusher.stop()


def test_ticks_that_arrive_while_the_spacing_waits_ride_that_flush_and_leave_no_empty_one_behind(spaced):
    hub, wire = spaced
    chunks: list[list[str]] = []

    def read() -> list[list[str]]:
        chunks.extend(prices(c) for c in wire.chunks() if c != sse.PING)
        return chunks
    hub.publish(tick(price="1.00", seq=1))               # goes out at once
    _wait_for(lambda: read() == [["1.00"]], "the first price at once")
    hub.publish(tick(price="2.00", seq=2))               # within the spacing: waits ...
    gevent.sleep(0.05)
    hub.publish(tick(price="3.00", seq=3))               # ... and this one arrives while it waits
    _wait_for(lambda: len(read()) == 2, "the spaced flush")
    flushes = hub.counters.flushes
    gevent.sleep(0.7)                                    # past another spacing
    assert read() == [["1.00"], ["2.00", "3.00"]]
    assert hub.counters.flushes == flushes, "an empty flush after the spaced one"


def test_a_wake_up_that_writes_nothing_does_not_start_a_spacing(spaced):
    hub, wire = spaced
    hub.publish(tick(price="1.00", seq=1))
    _wait_for(lambda: wire.chunks(), "the first price")
    gevent.sleep(0.6)                                    # the spacing is over
    flushes = hub.counters.flushes
    hub.catch_up(wire.client)         # a wake-up with nothing to write (as a WSGI client's taking its chunk)
    _wait_for(lambda: hub.counters.flushes > flushes, "the empty flush")
    sent = time.monotonic()
    hub.publish(tick(price="2.00", seq=2))
    _wait_for(lambda: any(prices(c) == ["2.00"] for c in wire.chunks()), "the second price")
    assert time.monotonic() - sent < 0.4, "held by a spacing the empty flush started"


# -- status, pings, shutdown -------------------------------------------------------------------

def test_status_reaches_every_client_and_a_ping_only_those_sent_nothing_else():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    btc, eth = Wire(hub, ("BTC/USD",)), Wire(hub, ("ETH/USD",))
    flush(hub)
    hub.broadcast_status({"mode": "redis"})
    flush(hub)
    assert b'event: status\ndata: {"mode":"redis"}' in btc.body()
    assert b"event: status" in eth.body()
    hub.publish(tick("BTC/USD", "5.00"))
    hub.ping_all()
    flush(hub)
    assert prices(btc.body()) == ["5.00"]             # a price resets idle timers just as well
    assert eth.body() == sse.PING
    flush(hub)
    assert btc.body() == eth.body() == b""


def test_closing_wakes_every_client_greenlet_and_a_closed_hub_refuses_new_streams():
    hub = Hub(["BTC/USD"], max_clients=2, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    waiter = gevent.spawn(wire.client.wait)
    gevent.sleep(0)
    hub.close_all()
    waiter.get(timeout=1)
    assert wire.client.closed
    hub.disconnect(wire.client)
    assert hub.status()["clients"] == 0
    with pytest.raises(HubClosed):
        hub.connect(("BTC/USD",))


def test_capacity_is_enforced():
    hub = Hub(["BTC/USD"], max_clients=2, stale_after=10)
    hub.connect(("BTC/USD",)), hub.connect(("BTC/USD",))
    with pytest.raises(HubFull):
        hub.connect(("BTC/USD",))


def test_a_flusher_far_behind_falls_back_to_the_latest_price_per_pair():
    from pricefeed.delivery import subscribers
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    flush(hub)
    for seq in range(1, subscribers.JOURNAL_LIMIT + 10):
        hub.publish(tick(price=f"{seq}.00", seq=seq))
    flush(hub)
    assert prices(wire.body()) == [f"{subscribers.JOURNAL_LIMIT + 9}.00"]


# -- the book: fencing, staleness, resume --------------------------------------------------------

def test_ticks_from_an_older_epoch_are_dropped():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    flush(hub)
    hub.publish(tick(price="2.00", epoch=2, seq=1))
    assert hub.publish(tick(price="1.00", epoch=1, seq=99)) is False
    assert hub.counters.ticks_fenced == 1
    flush(hub)
    assert prices(wire.body()) == ["2.00"]


def test_prices_become_stale_unless_confirmed():
    clock = ManualClock()
    hub = Hub(["BTC/USD"], max_clients=2, stale_after=5, clock=clock)
    hub.publish(tick())
    clock.now += 6
    assert hub.stale_pairs() == ["BTC/USD"]
    snap = hub.snapshot(["BTC/USD"])[0]
    assert snap["stale"] is True and snap["age_ms"] >= 0
    hub.confirm_current()
    assert hub.stale_pairs() == []


def test_pairs_of_an_exchange_connection_that_is_down_are_not_confirmed():
    clock = ManualClock()
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=2, stale_after=5, clock=clock)
    hub.publish(tick("BTC/USD", seq=1))
    hub.publish(tick("ETH/USD", seq=2))
    clock.now += 6
    hub.confirm_current(except_pairs=["ETH/USD"])
    assert hub.stale_pairs() == ["ETH/USD"]


def test_resume_tells_whether_the_client_missed_anything_it_cannot_recover():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=2, stale_after=5, resume_window=3)
    for seq in range(1, 6):
        hub.publish(tick("BTC/USD" if seq % 2 else "ETH/USD", epoch=7, seq=seq))
    assert hub.resume((7, 4), ["BTC/USD"]) == {"last_event_id": "7-4", "gap": False, "missed": 1}
    assert hub.resume((7, 1), ["BTC/USD"])["gap"] is True      # older than the window
    assert hub.resume((6, 4), ["BTC/USD"])["gap"] is True      # another publisher's epoch
    assert hub.resume((7, 9), ["BTC/USD"])["gap"] is True      # from the future


def test_change24h_is_computed_in_decimal():
    t = PriceTick("BTC/USD", "BTCUSDT", "9318.48000000", 1, "binance", "9383.48000000")
    assert t.payload()["change24h"] == "-0.693"
    assert PriceTick.from_json(t.to_json()) == t


def test_a_repeated_or_older_tick_of_the_same_epoch_is_not_delivered_twice():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    assert hub.publish(tick(price="2.00", seq=5))
    flush(hub)
    wire.chunks()
    assert hub.publish(tick(price="2.00", seq=5)) is False
    assert hub.publish(tick(price="1.00", seq=4)) is False
    flush(hub)
    assert wire.body() == b""
    assert hub.seq == 5


def test_a_new_epoch_restarts_the_sequence_in_event_ids():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    hub.publish(tick("BTC/USD", epoch=1, seq=500))
    hub.publish(tick("ETH/USD", epoch=2, seq=1))
    assert hub.last_event_id == "2-1"


def test_after_a_rebase_the_lower_epoch_of_a_restarted_redis_is_followed():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    hub.publish(tick(price="7.00", epoch=7, seq=40))
    assert hub.publish(tick(price="1.00", epoch=1, seq=1)) is False   # fenced, as it must be ...
    hub.rebase(1)                                                      # ... until the bus proves epoch 1 is current
    assert hub.publish(tick(price="1.00", epoch=1, seq=2))
    flush(hub)
    assert prices(wire.body()) == ["1.00"]
    assert hub.last_event_id == "1-2"


def test_local_tier_ticks_have_their_own_ids_and_yield_to_the_next_bus_tick():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    hub.publish(tick(price="1.00", epoch=3, seq=10))
    flush(hub)
    wire.chunks()
    hub.publish_local(tick(price="2.00"))
    flush(hub)
    assert b"id: 0-1\n" in wire.body()
    assert hub.last_event_id == "3-10"               # the bus's ids are untouched
    assert hub.publish(tick(price="3.00", epoch=3, seq=5))   # older seq, but it replaces a local price
    flush(hub)
    assert prices(wire.body()) == ["3.00"]


def test_disconnecting_twice_counts_once():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    assert hub.status()["clients_direct"] == 1
    hub.disconnect(wire.client)
    hub.disconnect(wire.client)
    assert hub.status()["clients"] == 0 and hub.status()["clients_direct"] == 0


def test_a_status_never_overtakes_the_prices_made_before_it_in_one_chunk():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    flush(hub)
    hub.publish(tick(price="1.00", seq=1))
    hub.broadcast_status({"mode": "degraded"})
    hub.publish(tick(price="2.00", seq=2))
    flush(hub)
    body = wire.body()
    assert body.index(b'"price":"1.00"') < body.index(b"event: status") < body.index(b'"price":"2.00"')


def test_after_a_failed_flush_the_next_one_sends_everyone_the_latest_prices():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    wires = [Wire(hub, ("BTC/USD",)), Wire(hub, ("ETH/USD",))]
    flush(hub)
    hub.publish(tick("BTC/USD", "1.00", seq=1))
    hub.take_batch()                                  # a batch that never went out (the flush raised)
    hub.resync()
    hub.publish(tick("ETH/USD", "2.00", seq=2))
    flush(hub)
    assert prices(wires[0].body()) == ["1.00"] and prices(wires[1].body()) == ["2.00"]


def test_shutdown_cuts_short_a_backlog_write_to_a_client_that_stopped_reading():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    wire.server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    flush(hub)
    seq = 0
    while wire.client.backlog is None:
        seq += 1
        hub.publish(tick(price=f"{seq}.00", seq=seq))
        flush(hub)
        assert seq < 100_000
    hub.close_all()
    with pytest.raises(OSError):                      # what the greenlet's blocking write now gets
        wire.server_end.send(b"x")


def test_in_process_publishers_started_in_the_same_millisecond_get_different_epochs(monkeypatch):
    """Two workers without Redis are two publishers: a shared epoch would make one vouch for the other's ids."""
    from pricefeed.cluster import memory_bus
    monkeypatch.setattr(memory_bus.time, "time", lambda: 1_700_000_000.123)
    monkeypatch.setattr(memory_bus.os, "getpid", lambda: 4242)
    first = memory_bus.InProcessBus().epoch
    monkeypatch.setattr(memory_bus.os, "getpid", lambda: 4243)
    second = memory_bus.InProcessBus().epoch
    assert first != second and len(str(first)) <= 19          # ids stay within what Last-Event-ID accepts
    monkeypatch.setattr(memory_bus.time, "time", lambda: 1_700_000_000.124)
    assert memory_bus.InProcessBus().epoch > max(first, second)   # a restart still sorts after


def test_a_halted_or_unlisted_pair_is_never_fresh_and_every_entry_says_its_status():
    from pricefeed.exchange.catalogue import Standing
    clock = ManualClock()
    hub = Hub(["BTC/USD", "ETH/USD", "SOL/EUR"], 10, stale_after=5.0, clock=clock)
    now_ms = int(time.time() * 1000)
    hub.publish(tick("BTC/USD", ts=now_ms, seq=1))
    hub.publish(tick("ETH/USD", ts=now_ms, seq=2))
    hub.confirm_current()
    hub.set_standings({"BTC/USD": Standing("BTC/USD", "listed", "BTCUSDT", "USDT"),
                       "ETH/USD": Standing("ETH/USD", "halted", "ETHUSDT", "USDT", "HALT"),
                       "SOL/EUR": Standing("SOL/EUR", "unlisted", None, None)})
    entries = {entry["pair"]: entry for entry in hub.snapshot(["BTC/USD", "ETH/USD", "SOL/EUR"])}
    assert (entries["BTC/USD"]["status"], entries["BTC/USD"]["stale"], entries["BTC/USD"]["quote"]) == ("live", False, "USDT")
    # A live connection confirms every held price current; a halted market's is still not fresh.
    assert (entries["ETH/USD"]["status"], entries["ETH/USD"]["stale"]) == ("halted", True)
    assert "SOL/EUR" not in entries                     # no price: never one invented
    assert hub.pair_states(["SOL/EUR", "ETH/USD"]) == {
        "SOL/EUR": {"status": "unlisted", "symbol": None},
        "ETH/USD": {"status": "halted", "symbol": "ETHUSDT", "quote": "USDT"}}
    assert hub.stale_pairs() == ["ETH/USD"]
    # A catch-up (the held frame) carries the status in force too.
    assert b'"status":"halted"' in hub.book["ETH/USD"].frame[0]
