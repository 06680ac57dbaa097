"""The per-address counts shared by the workers of a host, and the tiers that use them.

Each HostAddressCounts opened here is a worker of its own (flock is per open file, so two in
one process contend as two processes would); a real child process stands for a worker that
dies with SIGKILL. The Redis tier is exercised against a real redis-server in
tests/integration/test_address_limits.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from pricefeed.cluster.address_limits import AddressLimits
from pricefeed.cluster.host_address_counts import SLOTS, HostAddressCounts, HostAddressRates
from pricefeed.delivery.admission import AdmissionGate
from tests.support.waiting import wait_until


@pytest.fixture
def table_dir(tmp_path):
    return str(tmp_path)


def worker(table_dir: str) -> HostAddressCounts:
    counts = HostAddressCounts("test", directory=table_dir)
    assert counts.start()
    return counts


def test_workers_of_a_host_share_one_cap_per_address(table_dir):
    a, b = worker(table_dir), worker(table_dir)
    try:
        taken = [counts.acquire("203.0.113.7", 5)[0] for counts in (a, b) * 4]
        assert taken == [True] * 5 + [False] * 3
        assert a.count("203.0.113.7") == b.count("203.0.113.7") == 5
        assert a.acquire("203.0.113.8", 5)[0], "another address has its own count"
        b.add("203.0.113.7", -1)
        assert a.acquire("203.0.113.7", 5)[0] and not b.acquire("203.0.113.7", 5)[0]
    finally:
        a.stop()
        b.stop()


def test_a_worker_that_stops_gives_its_counts_back(table_dir):
    a, b = worker(table_dir), worker(table_dir)
    for _ in range(3):
        a.acquire("2001:db8::/64", None)
    assert b.count("2001:db8::/64") == 3
    a.stop()
    assert b.count("2001:db8::/64") == 0
    b.stop()


def test_a_worker_killed_holding_counts_is_swept_by_a_sibling(table_dir):
    survivor = worker(table_dir)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pricefeed.cluster.host_address_counts import HostAddressCounts
        counts = HostAddressCounts("test", directory={table_dir!r})
        assert counts.start()
        for _ in range(4):
            counts.acquire("198.51.100.1", None)
        print("holding", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "holding"
        assert survivor.count("198.51.100.1") == 4
        assert survivor.sweep(force=True) == 0, "a live worker's column is left alone"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        wait_until(lambda: survivor.sweep(force=True) or survivor.count("198.51.100.1") == 0, 5,
                   message="the dead worker's column to be swept")
        assert survivor.count("198.51.100.1") == 0
    finally:
        child.kill()
        survivor.stop()


def test_more_workers_than_slots_count_on_their_own(table_dir):
    workers = [worker(table_dir) for _ in range(SLOTS)]
    extra = HostAddressCounts("test", directory=table_dir)
    try:
        assert not extra.start() and not extra.shared
        limits = AddressLimits(2, host=extra)
        limits.start()
        assert limits.scope == "worker"
        assert limits.acquire("a") and limits.acquire("a") and not limits.acquire("a")
    finally:
        extra.stop()
        for counts in workers:
            counts.stop()


def test_address_limits_count_per_host_without_redis(table_dir):
    one = AddressLimits(3, host=HostAddressCounts("test", directory=table_dir))
    two = AddressLimits(3, host=HostAddressCounts("test", directory=table_dir))
    one.start()
    two.start()
    try:
        assert one.scope == two.scope == "host"
        assert [one.acquire("a"), two.acquire("a"), one.acquire("a"), two.acquire("a")] == [True, True, True, False]
        assert two.status()["refused_by_host_count"] == 1
        one.release("a")
        assert two.acquire("a")
        one.release("a")
        one.release("a")          # one more release than it holds: ignored, nothing goes negative
        assert two.held("a") == 2 and one.held("a") == 0
        assert one.acquire("a") and not two.acquire("a")
    finally:
        one.stop()
        two.stop()


def test_streams_opened_before_the_start_are_counted_once_started(table_dir):
    early = AddressLimits(2, host=HostAddressCounts("test", directory=table_dir))
    sibling = AddressLimits(2, host=HostAddressCounts("test", directory=table_dir))
    assert early.acquire("a") and early.scope == "worker"
    early.start()
    sibling.start()
    try:
        assert sibling.acquire("a") and not sibling.acquire("a")
        early.release("a")
        assert sibling.acquire("a")
    finally:
        early.stop()
        sibling.stop()


def test_an_address_share_of_new_streams_is_paced_for_the_host(table_dir):
    now = [100.0]
    one = HostAddressRates("test", directory=table_dir, clock=lambda: now[0])
    two = HostAddressRates("test", directory=table_dir, clock=lambda: now[0])
    assert one.start() and two.start()
    try:
        # Two a second after a burst of 3, no waiting allowed: the burst is the host's, not each worker's.
        taken = [rates.take("a", 2.0, 3, 0.0)[0] for rates in (one, two, one, two)]
        assert taken == [True, True, True, False]
        assert two.take("b", 2.0, 3, 0.0)[0], "another address has its own pace"
        now[0] += 0.5
        assert one.take("a", 2.0, 3, 0.0)[0] and not two.take("a", 2.0, 3, 0.0)[0]
        # With a wait allowed, a newcomer is told how long.
        allowed, wait = two.take("a", 2.0, 3, 1.0)
        assert allowed and 0.4 < wait <= 0.5
    finally:
        one.stop()
        two.stop()


def test_the_admission_gate_uses_the_shared_pace_when_the_counts_offer_one(table_dir):
    gate_a = AdmissionGate(10, 10, 0, address_share=0.3,
                           streams=AddressLimits(None, host_rates=HostAddressRates("test", directory=table_dir)))
    gate_b = AdmissionGate(10, 10, 0, address_share=0.3,
                           streams=AddressLimits(None, host_rates=HostAddressRates("test", directory=table_dir)))
    gate_a.streams.start()
    gate_b.streams.start()
    try:
        answers = [gate.admit("a").refused for gate in (gate_a, gate_b) * 3]
        assert answers == [None, None, None, "address", "address", "address"]
        assert all(gate.admit("b").refused is None for gate in (gate_a, gate_b))
    finally:
        gate_a.streams.stop()
        gate_b.streams.stop()
