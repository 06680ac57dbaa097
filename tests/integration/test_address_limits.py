"""One per-address stream cap for the whole deployment, against the real thing: two gunicorn
instances of 2 gevent workers each on one real redis-server, the simulator as the exchange, and
clients that are raw sockets bound to 127.0.0.2 (one visitor) spread over both instances.

What a user observes: the stream after the cap is a 429 `too_many_streams` whichever worker or
instance it lands on; a worker killed with SIGKILL gives its address's streams back within
seconds; with Redis gone each instance (a host) still holds the cap, and /health says so.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager

import pytest

from tests.integration.test_overload_and_restart import metric
from tests.integration.test_public_endpoint import RawHttp
from tests.support.deployment import SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer, as_text
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until

PREFIX = "/api/market-data"
STREAM = PREFIX + "/stream?pairs=BTC/USD"
CAP = 6
VISITOR = "127.0.0.2"
# A worker's listing lapses this long after its last refresh (cluster/redis_address_counts.py).
LISTING_TTL_S = 5.0


def open_stream(app: GunicornProcess, source: str = VISITOR, headers: dict | None = None) -> RawHttp:
    client = RawHttp(app.port, STREAM, source=source, headers=headers)
    if client.status == 200:
        client.read_until(b"event: snapshot")
    return client


def refusal(client: RawHttp) -> str | None:
    """None for an open stream, else the error the service answered with."""
    if client.status == 200:
        return None
    error = f"{client.status} {client.json()['error']}"
    client.close()
    return error


def every_worker_says(instance: GunicornProcess, key: str, value: str, timeout: float = 15) -> None:
    """/health lands on any worker: ask until each of the instance's workers has said it."""
    workers = len(instance.worker_pids())
    said: set[str] = set()

    def all_say():
        health = instance.health()
        if health.get(key) == value:
            said.add(health["worker"]["id"])
        else:
            said.discard(health["worker"]["id"])
        return len(said) >= workers
    wait_until(all_say, timeout, interval=0.05, message=f"every worker of {instance.url} to report {key}={value}")


def holders(redis_server: RedisServer, prefix: str, address: str = VISITOR) -> dict[int, int]:
    """Worker pid → streams of `address` it holds, as the deployment's counts in Redis say."""
    client = redis_server.client
    result = {}
    for worker in client.zrange(f"{prefix}:addr:streams:workers", 0, -1):
        name = as_text(worker)
        count = client.hget(f"{prefix}:addr:streams:w:{name}", address)
        if count and int(count) > 0:
            result[int(name.rsplit(":", 1)[1])] = int(count)
    return result


@contextmanager
def two_instances(**settings: str):
    prefix = new_prefix()
    with RedisServer() as redis_server, SimulatorProcess(pairs=SYMBOLS, rate=20) as sim:
        env = instance_env(sim, redis_server.url, prefix, **settings)
        with GunicornProcess(workers=2, env=env) as a, GunicornProcess(workers=2, env=env) as b:
            all_live([a, b])
            yield redis_server, prefix, a, b


@pytest.fixture
def deployment():
    with two_instances(PRICEFEED_MAX_STREAMS_PER_IP=str(CAP), PRICEFEED_NEW_STREAMS_SHARE_PER_IP="1") as running:
        yield running


def test_one_address_holds_the_cap_across_instances_and_a_killed_worker_gives_its_streams_back(deployment):
    redis_server, prefix, a, b = deployment
    every_worker_says(a, "address_limits", "deployment")
    every_worker_says(b, "address_limits", "deployment")
    held: list[RawHttp] = []
    try:
        # Alternating instances (and, within each, whichever worker accepts): 2 × CAP attempts.
        outcomes = []
        for n in range(2 * CAP):
            client = open_stream((a, b)[n % 2])
            outcomes.append(refusal(client))
            if client.status == 200:
                held.append(client)
        print(f"streams from one address, cap {CAP}, 2 instances × 2 workers: "
              f"{outcomes.count(None)} admitted of {len(outcomes)}; spread over workers {holders(redis_server, prefix)}")
        assert outcomes == [None] * CAP + ["429 too_many_streams"] * CAP
        spread = holders(redis_server, prefix)
        assert sum(spread.values()) == CAP
        # Each instance's /metrics (its workers summed, as each worker's sampler last wrote) counts the 429s.
        wait_until(lambda: sum(metric(app, 'pricefeed_address_refused_total{reason="too_many_streams"}')
                               for app in (a, b)) == CAP, 10, message="the 429s counted in /metrics")
        a_pids, b_pids = set(a.worker_pids()), set(b.worker_pids())
        assert spread.keys() & a_pids and spread.keys() & b_pids, f"streams held on both instances: {spread}"

        # A spoofed X-Forwarded-For from an untrusted peer is that peer: still capped, everywhere.
        for instance in (a, b):
            for n in range(3):
                spoofed = open_stream(instance, headers={"X-Forwarded-For": f"198.51.100.{n}"})
                assert refusal(spoofed) == "429 too_many_streams"
        # Another visitor is not affected.
        other = open_stream(b, source="127.0.0.3")
        assert other.status == 200
        held.append(other)

        # SIGKILL a worker holding some of them: its streams' count vanishes with its listing.
        victim = max(spread, key=lambda pid: spread[pid])
        instance = a if victim in a_pids else b
        killed_at = time.monotonic()
        instance_pid_before = set(instance.worker_pids())
        os.kill(victim, signal.SIGKILL)

        def admitted_again():
            client = open_stream((a, b)[int(time.monotonic() * 10) % 2])
            if client.status == 200:
                held.append(client)
                return True
            assert refusal(client) == "429 too_many_streams"
            return False
        wait_until(admitted_again, LISTING_TTL_S + 5, interval=0.1,
                   message="a stream from the capped address to be admitted after the SIGKILL")
        released_after = time.monotonic() - killed_at
        print(f"a worker holding {spread[victim]} of the address's {CAP} streams killed with SIGKILL: "
              f"a new stream admitted {released_after:.2f} s later (listing TTL {LISTING_TTL_S:.0f} s)")
        assert released_after < LISTING_TTL_S + 3
        assert victim not in holders(redis_server, prefix)
        # Exactly the dead worker's share came back, no more: the cap still holds.
        wait_until(lambda: set(instance.worker_pids()) != instance_pid_before, 15,
                   message="gunicorn to replace the killed worker")
        for _ in range(spread[victim] - 1):
            client = open_stream(a)
            assert client.status == 200, refusal(client)
            held.append(client)
        for instance in (a, b):
            assert refusal(open_stream(instance)) == "429 too_many_streams"
    finally:
        for client in held:
            client.close()


def test_with_redis_gone_each_host_holds_the_cap_and_health_says_so(deployment):
    redis_server, prefix, a, b = deployment
    every_worker_says(a, "address_limits", "deployment")
    redis_server.kill()
    every_worker_says(a, "address_limits", "host")
    every_worker_says(b, "address_limits", "host")
    held: list[RawHttp] = []
    try:
        # Each instance is a host of its own: the cap holds across its two workers.
        for instance in (a, b):
            outcomes = []
            for _ in range(CAP + 4):
                client = open_stream(instance)
                outcomes.append(refusal(client))
                if client.status == 200:
                    held.append(client)
            print(f"Redis down, one instance of 2 workers: {outcomes.count(None)} of {len(outcomes)} "
                  f"streams admitted from one address (cap {CAP})")
            assert outcomes == [None] * CAP + ["429 too_many_streams"] * 4
            spoofed = open_stream(instance, headers={"X-Forwarded-For": "198.51.100.9"})
            assert refusal(spoofed) == "429 too_many_streams"
        for client in held[:CAP]:
            client.close()
        held = held[CAP:]

        # Redis returns: every worker lists its holdings again and the deployment's count decides.
        redis_server.restart()
        every_worker_says(a, "address_limits", "deployment", timeout=20)
        every_worker_says(b, "address_limits", "deployment", timeout=20)
        wait_until(lambda: sum(holders(redis_server, prefix).values()) == CAP, 10,
                   message=f"the deployment's counts rebuilt from the workers' own ({holders(redis_server, prefix)})")
        for instance in (a, b):
            assert refusal(open_stream(instance)) == "429 too_many_streams"
    finally:
        for client in held:
            client.close()


def test_an_address_share_of_new_streams_is_paced_for_the_deployment():
    # Per worker: 10 new streams a second after a burst of 10, 30 % of it per address (3 at once,
    # then 3 a second), no waiting. Per worker that would let one address open 3 at once on each of
    # the 4 workers; for the deployment it is 3, plus what 3 a second adds while we open them.
    with two_instances(PRICEFEED_NEW_STREAMS_PER_SECOND="10", PRICEFEED_NEW_STREAMS_BURST="10",
                       PRICEFEED_NEW_STREAMS_SHARE_PER_IP="0.3", PRICEFEED_NEW_STREAM_MAX_WAIT="0",
                       PRICEFEED_MAX_STREAMS_PER_IP="100") as (redis_server, prefix, a, b):
        every_worker_says(a, "address_limits", "deployment")
        every_worker_says(b, "address_limits", "deployment")
        held: list[RawHttp] = []
        try:
            started = time.monotonic()
            outcomes = []
            for n in range(12):
                client = open_stream((a, b)[n % 2])
                outcomes.append(refusal(client))
                if client.status == 200:
                    held.append(client)
            took = time.monotonic() - started
            admitted = outcomes.count(None)
            print(f"12 new streams from one address in {took:.2f} s over 2 instances × 2 workers, share 3 at once "
                  f"+ 3/s: {admitted} admitted, refusals {set(outcomes) - {None}}")
            assert set(outcomes) - {None} == {"429 too_many_new_streams"}
            assert 3 <= admitted <= 3 + int(took * 3) + 1
        finally:
            for client in held:
                client.close()
