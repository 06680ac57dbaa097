"""The hub's fan-out: conflation, shared frames, fencing by epoch, snapshots and resume."""
from __future__ import annotations

import gevent
import pytest

from pricefeed.hub import Hub, HubFull
from pricefeed.ticks import PriceTick


class ManualClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def tick(pair="BTC/USD", price="100.00", epoch=1, seq=1, ts=1_700_000_000_000):
    return PriceTick(pair, pair.replace("/USD", "USDT"), price, ts, "binance", None, epoch, seq)


def test_a_slow_client_holds_only_the_latest_price_per_pair():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    mailbox = hub.connect(("BTC/USD", "ETH/USD"))
    for seq in range(1, 1001):
        hub.publish(tick(price=f"{100 + seq}.00", seq=seq))
    hub.publish(tick("ETH/USD", "5.00", seq=1001))
    chunk = mailbox.take(timeout=0)
    assert chunk.count(b"event: price") == 2
    assert b'"price":"1100.00"' in chunk and b'"price":"5.00"' in chunk
    assert b"id: 1-1000\n" in chunk


def test_one_frame_object_is_shared_by_every_client():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    a, b = hub.connect(("BTC/USD",)), hub.connect(("BTC/USD",))
    hub.publish(tick())
    assert a._prices["BTC/USD"] is b._prices["BTC/USD"]


def test_clients_only_get_the_pairs_they_asked_for():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    mailbox = hub.connect(("ETH/USD",))
    hub.publish(tick("BTC/USD"))
    assert mailbox.take(timeout=0) == b""


def test_ticks_from_an_older_epoch_are_dropped():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    mailbox = hub.connect(("BTC/USD",))
    hub.publish(tick(price="2.00", epoch=2, seq=1))
    assert hub.publish(tick(price="1.00", epoch=1, seq=99)) is False
    assert hub.ticks_fenced == 1
    assert b'"price":"2.00"' in mailbox.take(timeout=0)


def test_capacity_is_enforced():
    hub = Hub(["BTC/USD"], max_clients=2, stale_after=10)
    hub.connect(("BTC/USD",)), hub.connect(("BTC/USD",))
    with pytest.raises(HubFull):
        hub.connect(("BTC/USD",))


def test_disconnected_clients_get_nothing_more_and_closing_wakes_waiters():
    hub = Hub(["BTC/USD"], max_clients=2, stale_after=10)
    mailbox = hub.connect(("BTC/USD",))
    waiter = gevent.spawn(mailbox.take)
    gevent.sleep(0)
    hub.close_all()
    assert waiter.get(timeout=1) is None
    hub.disconnect(mailbox)
    assert hub.status()["clients"] == 0


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
    mailbox = hub.connect(("BTC/USD",))
    assert hub.publish(tick(price="2.00", seq=5))
    mailbox.take(timeout=0)
    assert hub.publish(tick(price="2.00", seq=5)) is False
    assert hub.publish(tick(price="1.00", seq=4)) is False
    assert mailbox.take(timeout=0) == b""
    assert hub.seq == 5


def test_a_new_epoch_restarts_the_sequence_in_event_ids():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    hub.publish(tick("BTC/USD", epoch=1, seq=500))
    hub.publish(tick("ETH/USD", epoch=2, seq=1))
    assert hub.last_event_id == "2-1"


def test_after_a_rebase_the_lower_epoch_of_a_restarted_redis_is_followed():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    mailbox = hub.connect(("BTC/USD",))
    hub.publish(tick(price="7.00", epoch=7, seq=40))
    assert hub.publish(tick(price="1.00", epoch=1, seq=1)) is False   # fenced, as it must be ...
    hub.rebase(1)                                                      # ... until the bus proves epoch 1 is current
    assert hub.publish(tick(price="1.00", epoch=1, seq=2))
    assert b'"price":"1.00"' in mailbox.take(timeout=0)
    assert hub.last_event_id == "1-2"


def test_local_tier_ticks_have_their_own_ids_and_yield_to_the_next_bus_tick():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    mailbox = hub.connect(("BTC/USD",))
    hub.publish(tick(price="1.00", epoch=3, seq=10))
    hub.publish_local(tick(price="2.00"))
    assert b"id: 0-1\n" in mailbox.take(timeout=0)
    assert hub.last_event_id == "3-10"               # the bus's ids are untouched
    assert hub.publish(tick(price="3.00", epoch=3, seq=5))   # older seq, but it replaces a local price
    assert b'"price":"3.00"' in mailbox.take(timeout=0)


def test_a_closed_hub_refuses_new_streams():
    from pricefeed.hub import HubClosed
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    hub.close_all()
    with pytest.raises(HubClosed):
        hub.connect(("BTC/USD",))
