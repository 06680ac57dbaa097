"""Reconnect policy: full jitter under a capped exponential ceiling, Retry-After, and the attempt cap."""
from __future__ import annotations

from pricefeed.exchange.backoff import ReconnectPolicy


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def ceiling_policy(**kw):
    # rand returns the upper bound so the test sees the ceiling the jitter is drawn under.
    return ReconnectPolicy(rand=lambda lo, hi: hi, **kw)


def test_first_attempt_goes_at_once_and_ceilings_double_up_to_the_cap():
    clock = Clock()
    policy = ceiling_policy(base=0.5, cap=4, max_attempts_per_window=1000, clock=clock)
    assert policy.delay() == 0
    ceilings = []
    for _ in range(6):
        policy.failed()
        ceilings.append(policy.delay())
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    policy.succeeded()
    assert policy.delay() == 0


def test_jitter_is_drawn_from_zero_to_the_ceiling():
    draws = []

    def low_end(lo: float, hi: float) -> float:
        draws.append((lo, hi))
        return lo
    policy = ReconnectPolicy(base=1, cap=10, max_attempts_per_window=100, rand=low_end)
    policy.failed()
    policy.delay()
    assert draws == [(0.0, 1)]


def test_retry_after_from_the_server_is_honoured():
    clock = Clock()
    policy = ceiling_policy(base=0.1, cap=1, max_attempts_per_window=100, clock=clock)
    policy.failed(retry_after=30)
    assert policy.delay() == 30
    clock.now = 29
    assert policy.delay() == 1
    clock.now = 31
    assert policy.delay() == 0.1


def test_attempts_are_capped_per_five_minutes_whatever_the_backoff_says():
    clock = Clock()
    policy = ReconnectPolicy(base=0.01, cap=0.01, max_attempts_per_window=3, clock=clock,
                             rand=lambda lo, hi: 0.0)
    for _ in range(3):
        policy.attempted()
        clock.now += 1
    assert policy.delay() == 300 - 3
    clock.now = 300.5
    assert policy.delay() == 0
