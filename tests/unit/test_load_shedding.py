"""Load shedding on lag, the flusher's lag measurement, and the spread close of a stopping worker.

The flusher and the hub are real, with clients on real socket pairs (see test_hub.py);
only the clock is manual where the test must decide how late a flush ran.
"""
from __future__ import annotations

import re
import time

import gevent
import pytest

from pricefeed.delivery.farewell import close_spread, farewell_retry
from pricefeed.delivery.flusher import Flusher
from pricefeed.delivery.hub import Hub, HubClosed
from pricefeed.delivery.load_shedder import LoadShedder, lag_bound
from tests.unit.test_hub import ManualClock, Wire, prices, tick


def shedder(bound=0.25, over=3, clock=None, oldest=lambda: None, over_s=0.0) -> LoadShedder:
    return LoadShedder(bound, over, retry_after_s=2, retry_jitter_s=3, clock=clock or ManualClock(),
                       oldest_unwritten=oldest, over_s=over_s)


def test_shedding_starts_only_after_consecutive_late_flushes_and_stops_below_half_the_bound():
    clock = ManualClock()
    load = shedder(clock=clock)
    load.observe(0.4, clock())
    load.observe(0.4, clock())
    assert load.refuse() is None                       # two late flushes: not yet
    load.observe(0.05, clock())                         # one on time resets the count
    load.observe(0.4, clock())
    load.observe(0.4, clock())
    assert load.refuse() is None
    load.observe(0.4, clock())                          # the third in a row
    retry_after = load.refuse()
    assert retry_after is not None and 2 <= retry_after <= 5
    load.observe(0.2, clock())                          # under the bound, not under half of it
    assert load.refuse() is not None
    for _ in range(10):
        load.observe(0.01, clock())
    assert load.refuse() is None
    status = load.status()
    assert status["shed_total"] == 2 and status["shed_episodes"] == 1 and status["shedding"] is False
    assert status["lag_bound_ms"] == 250.0 and status["lag_max_ms"] == 400.0


def test_late_flushes_must_span_a_second_so_a_burst_of_connects_does_not_shed():
    clock = ManualClock()
    load = shedder(clock=clock, over_s=1.0)
    for _ in range(5):                                 # a stall: five late flushes in 0.4 s ...
        load.observe(0.4, clock())
        clock.now += 0.1
    assert load.refuse() is None
    load.observe(0.01, clock())                        # ... then on time again
    for _ in range(11):                                # late for a whole second: an overload
        load.observe(0.4, clock())
        clock.now += 0.1
    assert load.refuse() is not None


def test_retry_after_is_jittered():
    clock = ManualClock()
    load = shedder(clock=clock, over=1)
    load.observe(1.0, clock())
    answers = {load.refuse() for _ in range(200)}
    assert answers == {2, 3, 4, 5}


def test_a_flush_stuck_for_twice_the_bound_sheds_before_it_ends_and_an_idle_flusher_stops_shedding():
    clock = ManualClock()
    waiting_since: list[float | None] = [None]
    load = shedder(clock=clock, oldest=lambda: waiting_since[0], over_s=1.0)
    waiting_since[0] = clock.now
    clock.now += 0.9
    assert load.refuse() is None                       # late, but not yet a second (and 4 bounds)
    clock.now += 0.2
    assert load.refuse() is not None                   # 1.1 s: shed at once
    waiting_since[0] = None                            # the flush ended; then nothing to write
    load.observe(0.6, clock.now)
    assert load.refuse() is not None
    clock.now += 0.3                                   # no flush for longer than the bound
    assert load.refuse() is None


def test_the_bound_follows_the_pace_unless_configured():
    assert lag_bound(0, interval_s=0) == 0.25
    assert lag_bound(0, interval_s=0.2) == 0.25
    assert lag_bound(0, interval_s=1.0) == 0.5
    assert lag_bound(0.7, interval_s=0) == 0.7


def test_the_flusher_measures_from_the_oldest_ticks_arrival_to_the_end_of_its_flush():
    clock = ManualClock()
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10, clock=clock)
    load = shedder(clock=clock, over=1)
    flusher = Flusher(hub, load, clock)
    load._oldest_unwritten = flusher.oldest_unwritten
    wire = Wire(hub, ("BTC/USD",))
    hub.publish(tick(price="1.00", seq=1))
    clock.now += 0.1
    hub.publish(tick(price="2.00", seq=2))             # the same batch: the first tick sets its age
    assert load.pending_lag() == pytest.approx(0.1)
    clock.now += 0.2
    flusher.flush(hub.take_batch())
    assert flusher.lag_s == pytest.approx(0.3)
    assert prices(wire.body())[-1] == "2.00"
    assert load.shedding and load.pending_lag() == 0
    hub.ping_all()                                     # a batch without ticks measures nothing
    flusher.flush(hub.take_batch())
    assert flusher.lag_s == pytest.approx(0.3)


def test_a_slowed_flusher_sheds_while_its_clients_keep_receiving_and_admits_again_when_it_recovers():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    load = LoadShedder(0.05, 2, clock=time.monotonic, over_s=0.2)
    flusher = Flusher(hub, load)
    load._oldest_unwritten = flusher.oldest_unwritten
    wire = Wire(hub, ("BTC/USD",))
    flusher.after_flush = lambda: gevent.sleep(0.1)    # a slow flusher, as the fault switch makes it
    flusher.start()
    try:
        seq = 0
        deadline = time.monotonic() + 3
        while not load.shedding:
            seq += 1
            hub.publish(tick(price=f"{seq}.00", seq=seq))
            gevent.sleep(0.01)
            assert time.monotonic() < deadline, "never shed"
        assert load.refuse() is not None
        assert prices(wire.body())                     # its client still receives
        flusher.after_flush = None
        deadline = time.monotonic() + 3
        while load.refuse() is not None:
            seq += 1
            hub.publish(tick(price=f"{seq}.00", seq=seq))
            gevent.sleep(0.01)
            assert time.monotonic() < deadline, "never admitted again"
    finally:
        flusher.stop()


def test_a_spread_close_sends_each_stream_a_retry_and_closes_them_in_slices_while_flushing_goes_on():
    hub = Hub(["BTC/USD"], max_clients=100, stale_after=10)
    flusher = Flusher(hub)
    flusher.start()
    wires = [Wire(hub, ("BTC/USD",)) for _ in range(40)]
    closed_at: dict[int, float] = {}

    def watch():
        while len(closed_at) < len(wires):
            for index, wire in enumerate(wires):
                if index not in closed_at and wire.client.closed:
                    closed_at[index] = time.monotonic()
            gevent.sleep(0.01)

    watcher = gevent.spawn(watch)
    started = time.monotonic()
    closer = gevent.spawn(close_spread, hub, 5.0, 80, farewell_retry(500, 2500))
    gevent.sleep(0.05)
    with pytest.raises(HubClosed):
        hub.connect(("BTC/USD",))                      # no new streams once stopping
    hub.publish(tick(price="7.00", seq=1))             # the streams still open still get prices
    result = closer.get(timeout=3)
    watcher.get(timeout=1)
    flusher.stop()
    assert result["streams"] == 40 and result["slices"] == 5
    spans = sorted(t - started for t in closed_at.values())
    assert spans[-1] - spans[0] >= 0.3                 # spread over the window, not one instant
    got_price = 0
    for wire in wires:
        body = wire.body()
        retries = [int(ms) for ms in re.findall(rb"retry: ([0-9]+)\n\n", body)]
        assert len(retries) == 1 and 500 <= retries[0] <= 3000
        got_price += b'"price":"7.00"' in body
    assert got_price >= 30                             # those not in the first slice
    assert hub.closed


def test_a_spread_close_of_few_streams_is_quick_at_the_close_rate():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    wires = [Wire(hub, ("BTC/USD",)) for _ in range(4)]
    result = close_spread(hub, 4.0, 1000, farewell_retry(500, 0))
    assert result["took_s"] < 0.1 and all(w.client.closed for w in wires)
    assert all(w.body().endswith(b"retry: 500\n\n") for w in wires)


def test_the_wait_before_the_closes_ends_when_a_successor_is_seen_or_at_its_bound():
    from pricefeed.delivery.farewell import wait_for_successor
    seen_after = time.monotonic() + 0.15
    waited = wait_for_successor(lambda: time.monotonic() >= seen_after, 5.0)
    assert 0.14 <= waited < 1.0                    # not the 5 s bound: the successor was up
    assert 0.2 <= wait_for_successor(lambda: False, 0.2) < 0.5     # nobody: the whole bound
    assert wait_for_successor(lambda: True, 5.0) < 0.05


def test_a_stopping_worker_waits_for_a_successor_on_its_own_host_under_a_newer_epoch():
    import socket
    from types import SimpleNamespace

    from pricefeed.node import Node
    from tests.support.doubles import stand_in
    host = socket.gethostname()
    me = SimpleNamespace(hub=SimpleNamespace(epoch=7), _heartbeat_epoch=7, worker_id=f"{host}:100",
                         bus=SimpleNamespace(leader_heartbeat={"worker": f"{host}:100", "epoch": 7}),
                         election=object())
    seen = Node._successor_on_this_host(stand_in(Node, me))
    assert not seen()                                                   # still our own heartbeat
    me.bus.leader_heartbeat = {"worker": "other-host:5", "epoch": 8}
    assert not seen()                                                   # another instance's leader
    me.bus.leader_heartbeat = {"worker": f"{host}:200", "epoch": 7}
    assert not seen()                                                   # not a newer epoch
    me.bus.leader_heartbeat = {"worker": f"{host}:200", "epoch": 8}
    assert seen()                                                       # a new worker here leads
    me.election = None
    assert not seen()                                                   # no Redis: the whole delay
