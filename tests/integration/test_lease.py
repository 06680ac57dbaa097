"""The lease and its fencing against a real redis-server."""
from __future__ import annotations

import pytest

from pricefeed.cluster.lease import Lease, LeaseTimings
from pricefeed.cluster.redis_bus import RedisBus, command_client
from pricefeed.ticks import PriceTick
from tests.support.redis_server import RedisServer


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def server():
    with RedisServer() as redis_server:
        yield redis_server


@pytest.fixture
def client(server):
    server.client.flushall()
    return command_client(server.url)


def lease(client, clock=None, prefix="t"):
    return Lease(client, prefix, LeaseTimings(ttl=2.0, renew_interval=0.5, renew_deadline=1.5),
                 clock or Clock())


def test_each_acquisition_takes_a_larger_epoch_and_only_one_holder_at_a_time(client):
    a, b = lease(client), lease(client)
    assert a.try_acquire() and a.epoch == 1
    assert not b.try_acquire()
    assert a.release()
    assert b.try_acquire() and b.epoch == 2


def test_acquire_is_reentrant_so_a_lost_reply_cannot_strand_the_lease(client):
    a = lease(client)
    assert a.try_acquire()
    a.epoch = None            # as if the reply to the first call had been lost
    assert a.try_acquire() and a.epoch == 1


def test_renew_and_release_act_only_for_the_holder(client):
    a, b = lease(client), lease(client)
    a.try_acquire()
    b.epoch = a.epoch         # b believes it holds the same epoch
    assert b.renew() is False and b.epoch is None
    assert not b.release()
    assert a.current_holder() == (a.owner, a.epoch)


def test_holder_demotes_itself_after_the_renew_deadline_on_the_monotonic_clock(client):
    clock = Clock()
    a = lease(client, clock)
    a.try_acquire()
    clock.now += 1.0
    assert a.held()
    clock.now += 0.6          # 1.6 s since the last renewal > 1.5 s deadline, still < 2 s TTL
    assert not a.held() and a.epoch is None


def test_epochs_never_restart_below_what_workers_have_seen_after_redis_loses_its_data(server, client):
    a = lease(client)
    a.try_acquire()
    a.release()
    server.client.flushall()  # what a restart without persistence does
    b = lease(client)
    assert b.try_acquire(floor=7) and b.epoch == 8


def test_publish_is_fenced_to_the_current_holder(server, client):
    a, b = lease(client), lease(client)
    bus_a, bus_b = RedisBus(client, "t", a), RedisBus(client, "t", b)
    tick = PriceTick("BTC/USD", "BTCUSDT", "1.00", 1, "binance")
    a.try_acquire()
    assert bus_a.publish(tick) is not None
    assert bus_b.publish(tick) is None                  # not the holder
    client.delete("t:lease")                            # a's lease expired ...
    assert b.try_acquire()                              # ... and b took over
    a._renewed_at = a._clock()                          # a still believes it holds it (paused process)
    assert bus_a.publish(tick) is None and bus_a.fenced == 1
    assert a.epoch is None                              # fenced out: it demoted itself
    stored = PriceTick.from_json(server.client.hget("t:last", "BTC/USD")[1:])
    assert stored.epoch == 1                            # nothing from the deposed leader after b won


def test_commands_are_not_retried_behind_our_back(client):
    retry = client.get_connection_kwargs().get("retry")
    assert retry is not None and retry.get_retries() == 0


def test_a_yielded_lease_goes_to_another_worker_and_the_yielder_holds_off(client):
    from pricefeed.cluster.lease import Election
    events = []
    a_lease, b_lease = lease(client, prefix="y"), lease(client, prefix="y")
    a = Election(a_lease, on_elected=lambda: events.append("a+"), on_demoted=lambda: events.append("a-"))
    b = Election(b_lease, on_elected=lambda: events.append("b+"), on_demoted=lambda: events.append("b-"))
    a._once()
    assert a.leading
    a.yield_lease(hold_off=60)          # its exchange connection has been down too long
    a._once()                           # holding off: it does not take the lease straight back
    b._once()
    assert (a.leading, b.leading) == (False, True)
    assert events == ["a+", "a-", "b+"]
    assert b_lease.epoch > 1


def test_ticks_published_in_one_round_trip_arrive_in_order_and_stay_fenced(server, client):
    a, b = lease(client), lease(client)
    bus_a = RedisBus(client, "t", a)
    pubsub = server.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("t:ticks")
    a.try_acquire()
    server.client.script_flush()                        # a fresh master (a promoted replica) has no scripts
    ticks = [PriceTick("BTC/USD", "BTCUSDT", f"{n}.00", n, "binance") for n in range(1, 6)]
    assert [t.seq if t is not None else None for t in bus_a.publish_many(ticks)] == [1, 2, 3, 4, 5]
    heard = [m for m in (pubsub.get_message(timeout=0.2) for _ in range(20)) if m]
    assert [PriceTick.from_json(m["data"][1:]).price for m in heard] == ["1.00", "2.00", "3.00", "4.00", "5.00"]
    client.delete("t:lease")
    assert b.try_acquire()
    a._renewed_at = a._clock()                          # a still believes it holds it
    assert bus_a.publish_many(ticks[:2]) == [None, None] and a.epoch is None
    assert PriceTick.from_json(server.client.hget("t:last", "BTC/USD")[1:]).price == "5.00"
