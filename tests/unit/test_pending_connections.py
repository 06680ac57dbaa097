"""The pending-connection counts per address (pricefeed/server/pending.py) and the pool-slot
hand-over of accept.py, on their own."""
from __future__ import annotations

import ipaddress

import gevent
from gevent import Greenlet
from gevent.pool import Pool

from pricefeed.server.accept import hand_over_slot
from pricefeed.server.pending import PendingConnections


def test_an_address_holds_at_most_its_limit_until_one_is_done():
    pending = PendingConnections(2, 5.0)
    first, second = pending.acquire(("198.51.100.7", 1000)), pending.acquire(("198.51.100.7", 1001))
    assert first == (True, "198.51.100.7") and second[0]
    assert pending.acquire(("198.51.100.7", 1002)) == (False, "198.51.100.7")
    assert pending.acquire(("198.51.100.8", 1000))[0]           # another address is not affected
    assert pending.refused_per_address == 1 and pending.pending == 3
    pending.release("198.51.100.7")
    assert pending.acquire(("198.51.100.7", 1003))[0]
    pending.release("198.51.100.7")
    pending.release("198.51.100.7")
    pending.release("198.51.100.8")
    assert pending.pending == 0 and pending.held("198.51.100.7") == 0 and not pending._counts


def test_ipv6_counts_per_64_and_a_trusted_proxy_is_exempt():
    pending = PendingConnections(1, 5.0, (ipaddress.ip_network("10.0.0.0/8"),))
    assert pending.acquire(("2001:db8:1:2::1", 1, 0, 0)) == (True, "2001:db8:1:2::/64")
    assert pending.acquire(("2001:db8:1:2::99", 1, 0, 0))[0] is False      # same /64
    assert pending.acquire(("::ffff:198.51.100.7", 1, 0, 0)) == (True, "198.51.100.7")
    for _ in range(5):
        assert pending.acquire(("10.1.2.3", 1)) == (True, None)            # nginx: no per-address count
    assert pending.pending == 7
    assert PendingConnections(0, 5.0).acquire(("198.51.100.7", 1)) == (True, "198.51.100.7")  # 0: no limit


def test_a_handed_over_slot_stays_one_slot_and_the_pool_never_looks_empty():
    pool = Pool(2)
    seen = []

    def served():
        gevent.sleep(0.05)
        seen.append(len(pool))

    def waiting_for_its_head():
        gevent.sleep(0.01)
        hand_over_slot(pool, Greenlet(served))
        seen.append(len(pool))            # still tracked until the hand-over: never 0

    pool.spawn(waiting_for_its_head)
    gevent.sleep(0.02)
    assert len(pool) == 1 and pool.free_count() == 1
    pool.join(timeout=2)
    assert seen == [1, 1] and len(pool) == 0 and pool.free_count() == 2
