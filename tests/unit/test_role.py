"""A worker's role from what it sees: whether its feed runs, where its ticks go, what it does with
the host's lock, and whose connection its prices come from. Pure decisions, read as tables."""
from __future__ import annotations

import pytest

from pricefeed.cluster.role import (
    BUS,
    CLAIM,
    CLAIM_TO_RUN,
    DROP,
    HOST,
    KEEP,
    LEADER,
    LOCAL,
    OWN,
    RELEASE,
    FeedPlan,
    Situation,
    feed_plan,
    price_source,
    takes_sibling_ticks,
    tick_route,
)

NO_REDIS = Situation(redis_configured=False)
LEADER_OK = Situation(redis_configured=True, leading=True, bus_subscribed=True, feed_running=True, host_tier=True)
FOLLOWER = Situation(redis_configured=True, leading=False, bus_subscribed=True, leader_live=True, host_tier=True)


def with_(seen: Situation, **changes) -> Situation:
    fields = {name: getattr(seen, name) for name in Situation.__slots__}
    return Situation(**{**fields, **changes})


@pytest.mark.parametrize("seen, run, host_lock", [
    (NO_REDIS, True, KEEP),                                                  # its own leader, always
    (with_(NO_REDIS, feed_running=True), True, KEEP),
    (LEADER_OK, True, KEEP),                                                 # Redis works: the lock is the local tier's
    (FOLLOWER, False, RELEASE),                                              # a leader delivers: no feed of ours
    (with_(FOLLOWER, local_tier=True), True, CLAIM_TO_RUN),                  # local tier: one connection per host
    (with_(FOLLOWER, local_tier=True, host_tier=False), True, KEEP),
    (with_(FOLLOWER, redis_failing=True), False, RELEASE),                   # failing, not yet local, no feed
    (with_(FOLLOWER, redis_failing=True, feed_running=True), True, CLAIM_TO_RUN),   # cut off: keep what runs
    (with_(LEADER_OK, redis_failing=True), True, CLAIM),                     # a leader cut off claims at once
    (with_(LEADER_OK, lease_lapsed=True), True, CLAIM),
    (with_(LEADER_OK, lease_lapsed=True, feed_running=False), True, CLAIM),
    (with_(LEADER_OK, host_tier=False, redis_failing=True), True, KEEP),
    (with_(LEADER_OK, local_tier=True), True, KEEP),                         # just elected out of the local tier
])
def test_the_feed_runs_while_the_worker_leads_or_serves_the_local_tier(seen, run, host_lock):
    assert feed_plan(seen) == FeedPlan(run, host_lock)


@pytest.mark.parametrize("seen, route", [
    (NO_REDIS, BUS),                                                          # the in-process bus
    (LEADER_OK, BUS),
    (with_(LEADER_OK, local_tier=True), BUS),                 # a leader publishes through the bus, even local
    (with_(LEADER_OK, redis_failing=True), BUS),              # ... and lets the fenced script refuse it
    (with_(LEADER_OK, lease_lapsed=True, leader_live=False), LOCAL),   # past its deadline: its own browsers
    (with_(FOLLOWER, local_tier=True, leader_live=False), LOCAL),
    (with_(FOLLOWER, redis_failing=True, leader_live=False), LOCAL),
    (with_(FOLLOWER, local_tier=True), DROP),                 # Redis back, a live leader's ticks reach us
    (with_(FOLLOWER, local_tier=True, bus_subscribed=False), LOCAL),   # ... not while we are not subscribed
    (FOLLOWER, BUS),   # a follower's REST poller or closing feed: the bus, whose fenced script refuses it
])
def test_ticks_of_our_own_feed_go_to_the_bus_unless_we_serve_locally(seen, route):
    assert tick_route(seen) == route


@pytest.mark.parametrize("seen, takes", [
    (with_(FOLLOWER, local_tier=True, leader_live=False), True),
    (with_(FOLLOWER, local_tier=True, leader_live=False, feed_running=True), False),   # we run our own
    (with_(FOLLOWER, local_tier=True), False),                                         # a leader delivers
    (FOLLOWER, False),                                                                 # not local at all
    (with_(LEADER_OK, lease_lapsed=True, feed_running=False, leader_live=False), True),
    (NO_REDIS, False),
])
def test_a_siblings_shared_ticks_are_taken_only_in_the_local_tier_without_a_feed_of_our_own(seen, takes):
    assert takes_sibling_ticks(seen) is takes


@pytest.mark.parametrize("seen, source", [
    (NO_REDIS, OWN),
    (LEADER_OK, OWN),
    (with_(LEADER_OK, feed_running=False), HOST),      # elected while a sibling's connection served us
    (FOLLOWER, LEADER),
    (with_(FOLLOWER, local_tier=True, feed_running=True), OWN),
    (with_(FOLLOWER, local_tier=True), HOST),
    (with_(FOLLOWER, local_tier=True, host_tier=False), OWN),
])
def test_prices_come_from_our_connection_the_hosts_or_the_leaders(seen, source):
    assert price_source(seen) == source
