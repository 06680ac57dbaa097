"""The deployment's per-address counts batch the opens and closes a worker queues meanwhile into
one script call — against a real redis-server, two AddressLimits standing for two workers.

What a user would observe: a burst of opens from one address on two workers at once admits
exactly the cap (the overshoot bound stays zero), costs a handful of round trips rather than
one per open, and leaves Redis holding exactly what the workers hold, also when a resync, a
killed waiter or a lapsed listing falls in the middle of a batch.
"""
from __future__ import annotations

import gevent
import pytest

from pricefeed.cluster.address_limits import AddressLimits
from pricefeed.cluster.redis_address_counts import RedisAddressCounts
from tests.support.deployment import new_prefix
from tests.support.redis_server import RedisServer, as_text

ADDRESS = "198.51.100.7"


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


def worker(redis_server: RedisServer, prefix: str, name: str, cap: int) -> AddressLimits:
    limits = AddressLimits(cap, redis_counts=RedisAddressCounts(redis_server.client, prefix, lambda: name))
    limits.start()
    limits.refresh_once()           # listed, as the refresher would do at once
    return limits


def counted_in_redis(redis_server: RedisServer, prefix: str, name: str) -> dict[str, int]:
    raw = redis_server.client.hgetall(f"{prefix}:addr:streams:w:{name}")
    return {as_text(key): int(value) for key, value in raw.items()}


def test_a_burst_on_two_workers_admits_exactly_the_cap_in_a_few_calls(redis_server):
    prefix = new_prefix()
    a, b = worker(redis_server, prefix, "host:1", 10), worker(redis_server, prefix, "host:2", 10)
    try:
        opens = [gevent.spawn(w.acquire, ADDRESS) for _ in range(30) for w in (a, b)]
        gevent.joinall(opens, timeout=10, raise_error=True)
        admitted = sum(1 for g in opens if g.value)
        assert admitted == 10
        assert a.held(ADDRESS) + b.held(ADDRESS) == 10
        assert counted_in_redis(redis_server, prefix, "host:1").get(ADDRESS, 0) == a.held(ADDRESS)
        assert counted_in_redis(redis_server, prefix, "host:2").get(ADDRESS, 0) == b.held(ADDRESS)
        # 60 opens: one call per worker for the burst, not one per open.
        assert a.batches + b.batches <= 4, (a.batches, b.batches)

        closes = [gevent.spawn(w.release, ADDRESS) for w in (a, b) for _ in range(w.held(ADDRESS))]
        gevent.joinall(closes, timeout=10, raise_error=True)
        wait_for_sender(a, b)
        assert counted_in_redis(redis_server, prefix, "host:1") == {}
        assert counted_in_redis(redis_server, prefix, "host:2") == {}
    finally:
        a.stop()
        b.stop()


def wait_for_sender(*workers: AddressLimits) -> None:
    for _ in range(200):
        if all(w._sender is None and not w._queue for w in workers):
            return
        gevent.sleep(0.01)
    raise AssertionError("the queued counts were never sent")


def test_a_resync_carries_the_releases_still_queued_and_they_are_not_sent_again(redis_server):
    prefix = new_prefix()
    a = worker(redis_server, prefix, "host:1", 100)
    try:
        gevent.joinall([gevent.spawn(a.acquire, ADDRESS) for _ in range(8)], raise_error=True)
        for _ in range(5):
            a.release(ADDRESS)                 # queued; the sender has not run yet
        a._needs_resync = True                 # as after a Redis error
        a.refresh_once()                       # rewrites the hash from what the worker holds
        wait_for_sender(a)
        assert a.held(ADDRESS) == 3
        assert counted_in_redis(redis_server, prefix, "host:1") == {ADDRESS: 3}
    finally:
        a.stop()


def test_an_open_killed_while_it_waits_counts_nowhere(redis_server):
    prefix = new_prefix()
    a = worker(redis_server, prefix, "host:1", 100)
    try:
        waiting = [gevent.spawn(a.acquire, ADDRESS) for _ in range(6)]
        gevent.sleep(0)                        # each has queued its acquire
        for greenlet in waiting[:3]:
            greenlet.kill(block=False)
        gevent.joinall(waiting, timeout=10)
        wait_for_sender(a)
        a.refresh_once()                       # a killed one that Redis counted is resynced away
        assert a.held(ADDRESS) == 3
        assert counted_in_redis(redis_server, prefix, "host:1") == {ADDRESS: 3}
    finally:
        a.stop()


def test_a_lapsed_listing_is_renewed_and_the_batch_counted(redis_server):
    prefix = new_prefix()
    a = worker(redis_server, prefix, "host:1", 4)
    try:
        gevent.joinall([gevent.spawn(a.acquire, ADDRESS) for _ in range(2)], raise_error=True)
        redis_server.client.delete(f"{prefix}:addr:streams:workers")      # the listing lapsed
        opens = [gevent.spawn(a.acquire, ADDRESS) for _ in range(5)]
        gevent.joinall(opens, timeout=10, raise_error=True)
        assert sum(1 for g in opens if g.value) == 2
        assert counted_in_redis(redis_server, prefix, "host:1") == {ADDRESS: 4}
        assert a.scope == "deployment"
    finally:
        a.stop()


def test_new_stream_slots_are_paced_for_the_deployment_in_the_same_calls(redis_server):
    prefix = new_prefix()
    a, b = worker(redis_server, prefix, "host:1", 100), worker(redis_server, prefix, "host:2", 100)
    try:
        takes = [gevent.spawn(w.take_new, ADDRESS, 1.0, 3, 0.0) for _ in range(5) for w in (a, b)]
        gevent.joinall(takes, timeout=10, raise_error=True)
        assert sum(1 for g in takes if g.value is not None and g.value[0]) == 3      # the burst of 3, for both workers together
    finally:
        a.stop()
        b.stop()


def test_opens_still_queued_when_a_worker_stops_do_not_list_it_again(redis_server):
    prefix = new_prefix()
    a = worker(redis_server, prefix, "host:1", 100)
    opens = [gevent.spawn(a.acquire, ADDRESS) for _ in range(3)]
    gevent.sleep(0)                        # queued; the sender has not run yet
    a.stop()                               # leaves Redis at once
    gevent.joinall(opens, timeout=10, raise_error=True)
    assert redis_server.client.zscore(f"{prefix}:addr:streams:workers", "host:1") is None
    assert counted_in_redis(redis_server, prefix, "host:1") == {}
