"""Circuit breakers (pybreaker) that behave under gevent, and their state for /health.

A breaker stops us hammering a dependency that is failing (Redis, the exchange's
REST API): after `fail_max` consecutive failures it opens and every call fails
fast with `pybreaker.CircuitBreakerError`, without touching the network, until
`reset_timeout` has passed; then one trial call is let through (half-open) and
its outcome closes or re-opens the breaker.

Wrap short calls only — a connect, one command, one HTTP request — never a
long-running loop: `CircuitBreaker.call()` holds the breaker's lock for the
whole call, so under gevent concurrent calls through one breaker serialise
(three 1 s calls take 3 s). Give the wrapped call its own socket timeout: a
socket timeout counts as a failure, a `gevent.Timeout` does not (see below).
The open -> half-open timer is pybreaker's, on the wall clock: a clock step
shortens or stretches the open period.

What pybreaker gets wrong for us, and what `new_breaker` does about it:

- It catches BaseException, so a greenlet killed mid-call (`GreenletExit`), an
  outer `gevent.Timeout` deadline, Ctrl-C or exit would count against the
  dependency. Those are excluded: they are our own interruptions, not its faults.
- It handles an excluded exception as a *success*: the failure count resets and
  a half-open breaker closes without a real trial. Here an interruption is
  neutral: counts and state stay as they were (`_InterruptibleMemory`).
- `CircuitRedisStorage` reads as closed when Redis is down, so a breaker guarding
  Redis must not keep its state there: state is always in this process's memory.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
import pybreaker

log = logging.getLogger(__name__)

T = TypeVar("T")

# Raised into a call by us (kill, deadline, shutdown), never by the dependency.
INTERRUPTIONS: tuple[type[BaseException], ...] = (gevent.GreenletExit, gevent.Timeout,
                                                  KeyboardInterrupt, SystemExit)
TRANSITIONS_KEPT = 20


class _InterruptibleMemory(pybreaker.CircuitMemoryStorage):
    """In-process breaker state that an interrupted call leaves untouched.

    pybreaker runs an excluded exception through its success path, which resets
    the failure counter and counts a half-open trial as passed. While
    `interrupted` is set those two writes are skipped; with the success counter
    left at zero the half-open breaker stays half-open for the next real trial.
    """

    def __init__(self) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self.interrupted = False

    def reset_counter(self) -> None:
        if not self.interrupted:
            super().reset_counter()

    def increment_success_counter(self) -> None:
        if not self.interrupted:
            super().increment_success_counter()


class _StateLog(pybreaker.CircuitBreakerListener):
    """Logs every state change and remembers the last few, with the failure that caused them."""

    def __init__(self) -> None:
        self.transitions: deque[dict[str, Any]] = deque(maxlen=TRANSITIONS_KEPT)
        self.last_failure: BaseException | None = None

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self.last_failure = exc

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        before = old_state.name if old_state is not None else None
        after = new_state.name
        self.transitions.append({"at": time.time(), "from": before, "to": after})
        detail = ""
        if after == pybreaker.STATE_OPEN:
            last = self.last_failure
            cause = "unknown" if last is None else type(last).__name__ + (f": {last}" if str(last) else "")
            detail = f" ({cb.fail_counter} failures; last: {cause})"
        log.warning("breaker %s: %s -> %s%s", cb.name, before, after, detail)


class GeventCircuitBreaker(pybreaker.CircuitBreaker):
    """A pybreaker breaker whose `call()` treats our own interruptions as neither failure nor success."""

    def __init__(self, name: str, fail_max: int, reset_timeout: float) -> None:
        self._memory = _InterruptibleMemory()
        self.state_log = _StateLog()
        # throw_new_error_on_trip=False: the call that trips the breaker raises its own error
        # (a 429 keeps its Retry-After); CircuitBreakerError then only ever means "refused
        # without trying".
        super().__init__(fail_max=fail_max, reset_timeout=reset_timeout, exclude=INTERRUPTIONS,
                         listeners=[self.state_log], state_storage=self._memory, name=name,
                         throw_new_error_on_trip=False)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def guarded() -> T:
            self._memory.interrupted = False
            try:
                return func(*args, **kwargs)
            except INTERRUPTIONS:
                self._memory.interrupted = True
                raise
        try:
            return super().call(guarded)
        finally:
            self._memory.interrupted = False


def new_breaker(name: str, fail_max: int, reset_timeout: float) -> pybreaker.CircuitBreaker:
    """A breaker with in-memory state that opens after `fail_max` consecutive failures.

    Use `breaker.call(func, ...)` (not `calling()`, whose body is not guarded
    against interruptions), around one short call each time.
    """
    return GeventCircuitBreaker(name, fail_max, reset_timeout)


def breaker_status(breaker: pybreaker.CircuitBreaker) -> dict[str, Any]:
    """The breaker's state for /health; `opened_at` (wall clock) only while not closed."""
    state = breaker.current_state
    opened = breaker._state_storage.opened_at  # pybreaker exposes no public getter
    state_log = getattr(breaker, "state_log", None)
    return {
        "state": state,
        "failures": breaker.fail_counter,
        "fail_max": breaker.fail_max,
        "reset_timeout_s": breaker.reset_timeout,
        "opened_at": opened.timestamp() if opened is not None and state != pybreaker.STATE_CLOSED
        else None,
        "last_transitions": list(state_log.transitions) if state_log is not None else [],
    }
