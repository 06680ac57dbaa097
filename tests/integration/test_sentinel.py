"""redis+sentinel:// against real sentinels on loopback: commands and subscriptions follow a promotion."""
from __future__ import annotations

import json

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from pricefeed.cluster.lease import Lease, LeaseTimings
from pricefeed.cluster.redis_client import redis_client
from tests.support.sentinel_group import SentinelGroup
from tests.support.waiting import wait_until


@pytest.fixture
def group():
    with SentinelGroup() as sentinel_group:
        yield sentinel_group


def test_commands_and_the_lease_follow_the_promoted_replica_within_seconds(group):
    client = redis_client(group.url)
    lease = Lease(client, "t", LeaseTimings())
    assert lease.try_acquire() and lease.epoch == 1
    wait_until(lambda: redis.Redis(port=group.ports["replica"]).get("t:epoch") == b"1", 5,
               message="the epoch replicated")
    group.kill_master()
    # The holder's renewals fail while no master answers (each command runs once: no retry loop) ...
    with pytest.raises(redis.ConnectionError):
        lease.renew()
    # ... and the same client reaches the promoted replica once the sentinels have switched.
    wait_until(lambda: group.master_port() == group.ports["replica"], 20, interval=0.2, message="a promotion")
    wait_until(lambda: lease.try_acquire(floor=1), 10, interval=0.2, message="the lease on the new master")
    assert lease.epoch == 2
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.master_address == ("127.0.0.1", group.ports["replica"])


def test_a_subscription_made_again_after_the_failover_hears_the_new_master(group):
    client = redis_client(group.url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("ticks")
    client.publish("ticks", "before")
    assert wait_until(lambda: pubsub.get_message(timeout=0.2), 5, message="a message")["data"] == b"before"
    group.kill_master()
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        for _ in range(20):
            pubsub.get_message(timeout=0.2)
    pubsub.close()
    wait_until(lambda: group.master_port() == group.ports["replica"], 20, interval=0.2, message="a promotion")
    # What the bus's resubscribe loop does: a new subscription, which asks the sentinels where to go.
    pubsub = wait_until(lambda: _subscribed(client), 10, interval=0.2, message="a new subscription")
    client.publish("ticks", "after")
    assert wait_until(lambda: pubsub.get_message(timeout=0.2), 5, message="a message")["data"] == b"after"


def _subscribed(client):
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("ticks")
    return pubsub


def test_the_status_command_reads_the_lease_through_the_sentinels(group):
    from tests.integration.test_cli import flask
    client = redis_client(group.url)
    lease = Lease(client, "st", LeaseTimings(ttl=30, renew_interval=10, renew_deadline=20))
    assert lease.try_acquire()
    result = flask("pricefeed", "status", "--json", PRICEFEED_REDIS_URL=group.url, PRICEFEED_REDIS_PREFIX="st")
    # Read (not "unreadable", 2); not live (1): a lease with no feed behind it publishes no prices.
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["leader"] == lease.owner and report["epoch"] == lease.epoch
