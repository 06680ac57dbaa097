"""Circuit breakers: open after fail_max, fail fast, half-open after the timeout, and gevent interruptions are neutral."""
from __future__ import annotations

import logging

import gevent
import pybreaker
import pytest

from pricefeed.breakers import breaker_status, new_breaker
from tests.support.waiting import wait_until


class Dependency:
    """Something a breaker guards: fails with ConnectionError while `down`, counts its calls."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.down:
            raise ConnectionError("connection refused")
        return "ok"


def fail(breaker: pybreaker.CircuitBreaker, dependency: Dependency, times: int) -> None:
    for _ in range(times):
        with pytest.raises((ConnectionError, pybreaker.CircuitBreakerError)):
            breaker.call(dependency)


def open_breaker(reset_timeout: float) -> tuple[pybreaker.CircuitBreaker, Dependency]:
    breaker, dependency = new_breaker("redis", fail_max=3, reset_timeout=reset_timeout), Dependency()
    dependency.down = True
    fail(breaker, dependency, 3)
    assert breaker.current_state == "open"
    return breaker, dependency


def pass_trial_when_due(breaker: pybreaker.CircuitBreaker, dependency: Dependency) -> str:
    """Call through the breaker until it lets a call through (CircuitBreakerError means not yet)."""
    return wait_until(lambda: breaker.call(dependency), timeout=5, interval=0.02,
                      message="the breaker to let a trial call through")


def reached_dependency(breaker: pybreaker.CircuitBreaker, dependency: Dependency) -> bool:
    """One call through the breaker; True if it got as far as the dependency."""
    before = dependency.calls
    try:
        breaker.call(dependency)
    except (ConnectionError, pybreaker.CircuitBreakerError):
        pass
    return dependency.calls > before


def test_opens_after_fail_max_failures_and_then_fails_fast_without_calling():
    breaker, dependency = new_breaker("redis", fail_max=3, reset_timeout=60), Dependency()
    dependency.down = True
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(dependency)
    assert breaker.current_state == "closed"
    with pytest.raises(ConnectionError):   # the third failure trips it, raising its own error
        breaker.call(dependency)
    assert breaker.current_state == "open"
    assert dependency.calls == 3

    dependency.down = False
    for _ in range(5):
        with pytest.raises(pybreaker.CircuitBreakerError):
            breaker.call(dependency)
    assert dependency.calls == 3


def test_a_success_resets_the_consecutive_failure_count():
    breaker, dependency = new_breaker("redis", fail_max=3, reset_timeout=60), Dependency()
    dependency.down = True
    fail(breaker, dependency, 2)
    dependency.down = False
    assert breaker.call(dependency) == "ok"
    dependency.down = True
    fail(breaker, dependency, 2)
    assert breaker.current_state == "closed"


def test_greenlet_kill_and_gevent_timeout_inside_a_call_are_not_failures():
    breaker, dependency = new_breaker("redis", fail_max=3, reset_timeout=60), Dependency()
    dependency.down = True
    fail(breaker, dependency, 2)

    for _ in range(5):
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.01):
            breaker.call(gevent.sleep, 5)
        caller = gevent.spawn(breaker.call, gevent.sleep, 5)
        gevent.sleep(0)                          # let it enter the call
        caller.kill()
        assert isinstance(caller.value, gevent.GreenletExit)
        with pytest.raises(gevent.GreenletExit):
            breaker.call(lambda: (_ for _ in ()).throw(gevent.GreenletExit()))

    # Neither counted as failures nor as successes: the two real failures still stand.
    assert breaker.current_state == "closed"
    assert breaker.fail_counter == 2
    fail(breaker, dependency, 1)
    assert breaker.current_state == "open"


def test_half_open_after_reset_timeout_and_a_successful_trial_closes_it():
    breaker, dependency = open_breaker(reset_timeout=0.2)
    dependency.down = False
    assert pass_trial_when_due(breaker, dependency) == "ok"
    assert breaker.current_state == "closed"
    moves = [(t["from"], t["to"]) for t in breaker_status(breaker)["last_transitions"]]
    assert moves == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_a_failed_trial_reopens_it_and_an_interrupted_trial_leaves_it_half_open():
    breaker, dependency = open_breaker(reset_timeout=0.2)

    wait_until(lambda: reached_dependency(breaker, dependency), timeout=5, interval=0.02,
               message="a trial call")
    assert breaker.current_state == "open"
    assert dependency.calls == 4

    def interrupted_trial() -> bool:
        try:
            with gevent.Timeout(0.01):
                breaker.call(gevent.sleep, 5)
        except pybreaker.CircuitBreakerError:
            return False
        except gevent.Timeout:
            return True
        raise AssertionError("the trial should have been interrupted")

    wait_until(interrupted_trial, timeout=5, interval=0.02, message="an interrupted trial call")
    assert breaker.current_state == "half-open"
    dependency.down = False
    assert breaker.call(dependency) == "ok"
    assert breaker.current_state == "closed"


def test_every_state_change_is_logged_at_warning_with_the_last_failure(caplog):
    caplog.set_level(logging.WARNING, logger="pricefeed.breakers")
    breaker, dependency = open_breaker(reset_timeout=0.2)
    dependency.down = False
    pass_trial_when_due(breaker, dependency)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert messages == [
        "breaker redis: closed -> open (3 failures; last: ConnectionError: connection refused)",
        "breaker redis: open -> half-open",
        "breaker redis: half-open -> closed",
    ]


def test_status_reports_state_counts_and_transitions():
    breaker, dependency = new_breaker("rest", fail_max=2, reset_timeout=30), Dependency()
    status = breaker_status(breaker)
    assert status == {"state": "closed", "failures": 0, "fail_max": 2, "reset_timeout_s": 30,
                      "opened_at": None, "last_transitions": []}

    dependency.down = True
    fail(breaker, dependency, 1)
    assert breaker_status(breaker)["failures"] == 1
    fail(breaker, dependency, 1)
    status = breaker_status(breaker)
    assert status["state"] == "open"
    assert status["failures"] == 2
    assert isinstance(status["opened_at"], float)
    [transition] = status["last_transitions"]
    assert transition["from"] == "closed" and transition["to"] == "open"
    assert transition["at"] == pytest.approx(status["opened_at"], abs=1.0)
