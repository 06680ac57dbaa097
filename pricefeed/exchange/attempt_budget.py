"""One budget of connection attempts per host, shared by every worker through a locked file.

Binance counts its 300 connection attempts per 5 minutes per IP. Each worker
already caps its own attempts (`ReconnectPolicy`), but in the local tier every
worker of a host connects on its own: eight workers would spend eight budgets.
This file holds the attempt times of the whole host; a worker takes an
attempt only while the window holds fewer than the limit.

Under gevent, a blocking `flock` would stall the worker's whole hub, so the lock
is tried without blocking and retried with short cooperative sleeps; the
critical section is one read and one write of a few kilobytes.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable

import gevent

log = logging.getLogger(__name__)

LOCK_RETRY_SECONDS = 0.002
LOCK_GIVE_UP_SECONDS = 0.5


def default_dir() -> str:
    """`<tmp>/pricefeed-<uid>`: private to the user that runs the service."""
    return os.path.join(tempfile.gettempdir(), f"pricefeed-{os.getuid()}")


class HostAttemptBudget:
    """At most `limit` attempts per `window` seconds across every process using `path`."""

    def __init__(self, directory: str, upstream_host: str, limit: int, window: float = 300.0,
                 clock: Callable[[], float] = time.time):
        safe_host = re.sub(r"[^A-Za-z0-9.-]", "_", upstream_host or "upstream")[:100]
        self.path = os.path.join(directory or default_dir(), f"attempts-{safe_host}.json")
        self.limit = limit
        self.window = window
        self._clock = clock
        self.last_count = 0          # what the file held at our last look, for /health
        self.denied = 0              # attempts this process was refused because the host's budget was spent
        self.errors = 0
        self.last_error = ""

    # -- the one operation that writes ------------------------------------------------

    def take(self) -> float:
        """Take one attempt now: 0.0 if taken, else the seconds until one is free.

        If the file cannot be used (permissions, a full disk), the attempt is allowed:
        the per-process cap still holds, and the failure shows in /health.
        """
        def take_locked(times: list[float], now: float) -> tuple[list[float], float]:
            if len(times) >= self.limit:
                return times, max(0.0, times[0] + self.window - now)
            return times + [now], 0.0
        wait = self._update(take_locked)
        if wait is None:
            return 0.0
        if wait > 0:
            self.denied += 1
        return wait

    def wait(self) -> float:
        """Seconds until the host's budget has room (0.0 now); takes nothing."""
        def look(times: list[float], now: float) -> tuple[list[float], float]:
            wait = 0.0 if len(times) < self.limit else max(0.0, times[0] + self.window - now)
            return times, wait
        wait = self._update(look)
        return 0.0 if wait is None else wait

    def status(self) -> dict:
        return {"scope": "host", "file": self.path, "limit_per_5min": self.limit,
                "attempts_last_5min": self.last_count, "denied_to_this_worker": self.denied,
                "errors": self.errors, "last_error": self.last_error or None}

    # -- file ------------------------------------------------------------------------

    def _update(self, change: Callable[[list[float], float], tuple[list[float], float]]) -> float | None:
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._failed(exc)
            return None
        try:
            if not self._lock(fd):
                self._failed(OSError(errno.EWOULDBLOCK, "attempt budget file stayed locked"))
                return None
            now = self._clock()
            times = self._read(fd, now)
            kept, result = change(times, now)
            if kept is not times:
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps([round(t, 3) for t in kept]).encode())
            self.last_count = len(kept)
            return result
        except OSError as exc:
            self._failed(exc)
            return None
        finally:
            os.close(fd)   # also releases the lock

    @staticmethod
    def _lock(fd: int) -> bool:
        deadline = time.monotonic() + LOCK_GIVE_UP_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                gevent.sleep(LOCK_RETRY_SECONDS)

    def _read(self, fd: int, now: float) -> list[float]:
        raw = os.read(fd, 1 << 20)
        try:
            times = json.loads(raw) if raw else []
        except ValueError:
            times = []
        if not isinstance(times, list):
            times = []
        # Drop what left the window, and anything dated in the future (a clock step back).
        return sorted(t for t in times if isinstance(t, (int, float)) and now - self.window < t <= now + 1)

    def _failed(self, exc: OSError) -> None:
        self.errors += 1
        if self.errors <= 3:
            log.warning("upstream attempt budget %s unusable (%s); counting this worker's attempts only",
                        self.path, exc)
        self.last_error = f"{type(exc).__name__}: {exc}"
        return None
