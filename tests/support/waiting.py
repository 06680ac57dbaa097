"""Waiting on conditions with deadlines: tests never sleep blindly."""
from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ConditionTimeout(AssertionError):
    """The awaited condition did not become true before its deadline."""


def wait_until(condition: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05,
               message: str = "condition") -> T:
    """Poll `condition` until it returns a truthy value; return that value (never None, so a
    condition that answers None for "not yet" gives its other type).

    Exceptions raised by the condition count as "not yet" so that a server still
    starting up (connection refused) does not fail the test; the last one is
    reported if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - reported below when the deadline passes
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise ConditionTimeout(f"timed out after {timeout}s waiting for {message}{detail}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
