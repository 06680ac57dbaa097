"""The fallback chain's decisions and their hysteresis, on a manual clock."""
from __future__ import annotations

from pricefeed.cluster.fallback import DEGRADED, LIVE, LOCAL, REDIS, FallbackChain, Observation


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def seen(redis_up=True, leading=False, feed_live=False, leader_live=True, redis_configured=True):
    return Observation(redis_configured, redis_up, leading, feed_live, leader_live)


def test_a_follower_is_live_while_the_leader_is_and_serves_redis_when_it_is_not():
    clock = Clock()
    chain = FallbackChain(clock)
    assert chain.update(seen()) == LIVE
    clock.now += 1
    assert chain.update(seen(leader_live=False)) == LIVE          # held through a short gap
    clock.now += 2
    assert chain.update(seen(leader_live=False)) == REDIS


def test_redis_down_goes_local_only_after_the_hysteresis_and_rejoins_when_a_leader_is_live():
    clock = Clock()
    chain = FallbackChain(clock, local_after=3, rejoin_after=2)
    chain.update(seen())
    down = seen(redis_up=False, leader_live=False, feed_live=True)
    chain.update(down)                       # Redis first seen down now
    clock.now += 2.5
    assert chain.update(down) != LOCAL
    clock.now += 1
    assert chain.update(down) == LOCAL and chain.local
    failed = seen(redis_up=False, leader_live=False, feed_live=False)
    assert chain.update(failed) == LOCAL     # our own connection just failed: held through a short gap
    clock.now += 2.5                         # ... failed for longer than the hold
    assert chain.update(failed) == DEGRADED
    back = seen(redis_up=True, leader_live=True, feed_live=True)
    chain.update(back)                       # Redis first seen up again now
    clock.now += 1
    assert chain.update(back) == LOCAL       # not yet: up for 1 s of the 2 s needed
    clock.now += 1.5
    assert chain.update(back) == LIVE and not chain.local


def test_local_tier_is_given_up_after_a_while_even_without_a_live_leader():
    clock = Clock()
    chain = FallbackChain(clock, local_after=1, rejoin_after=1, rejoin_after_anyway=10)
    chain.update(seen(redis_up=False, leader_live=False))
    clock.now += 1.5
    chain.update(seen(redis_up=False, leader_live=False))
    assert chain.local
    clock.now += 1
    chain.update(seen(leader_live=False))
    clock.now += 5
    assert chain.update(seen(leader_live=False)) == DEGRADED and chain.local
    clock.now += 6
    assert chain.update(seen(leader_live=False)) == REDIS and not chain.local


def test_without_redis_the_own_feed_decides_live_or_degraded():
    clock = Clock()
    chain = FallbackChain(clock)
    assert chain.update(seen(redis_configured=False, redis_up=False, leading=True, feed_live=True)) == LIVE
    down = seen(redis_configured=False, redis_up=False, leading=True, feed_live=False)
    assert chain.update(down) == LIVE        # held through a short gap
    clock.now += 2.5
    assert chain.update(down) == DEGRADED


def test_losing_redis_goes_from_live_straight_to_local_without_a_degraded_blip():
    clock = Clock()
    chain = FallbackChain(clock, hold_live=2, local_after=2)
    chain.update(seen())
    gone = seen(redis_up=False, leader_live=False, feed_live=False)
    modes = []
    for _ in range(12):                      # 3 s of monitor passes
        modes.append(chain.update(gone if not chain.local else seen(redis_up=False, leader_live=False,
                                                                    feed_live=True)))
        clock.now += 0.25
    assert [m for i, m in enumerate(modes) if i == 0 or modes[i - 1] != m] == [LIVE, LOCAL]


def test_a_moments_gap_in_the_local_tier_is_not_announced_as_degraded():
    """A worker served by its host's connection is elected when Redis returns and opens its own:
    the monitor may look before that one is up (tests/faults/test_fallback_chain.py, Redis frozen)."""
    clock = Clock()
    chain = FallbackChain(clock, hold_live=2, local_after=2)
    chain.update(seen())
    served = seen(redis_up=False, leader_live=False, feed_live=True)
    for _ in range(24):                      # 6 s: local for longer than its own start-up grace
        chain.update(served)
        clock.now += 0.25
    assert chain.local
    opening = seen(redis_up=True, leading=True, leader_live=False, feed_live=False)
    modes = [chain.update(served), chain.update(opening)]
    clock.now += 0.25
    modes.append(chain.update(seen(redis_up=True, leading=True, leader_live=False, feed_live=True)))
    assert modes == [LOCAL, LOCAL, LOCAL]
