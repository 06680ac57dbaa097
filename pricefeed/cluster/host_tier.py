"""HostTier: the workers of one host share one exchange connection in the local tier.

Without Redis each worker would open its own connection (the local tier), so a host cut off
from Redis would add one connection per worker at the exchange. Instead the first worker of
the instance to need one takes a host-wide lock (`flock` on a file in a directory named for
the gunicorn master's pid) and runs the connection; it hands every tick it delivers locally
to its siblings as one datagram each, over Unix sockets in the same directory, and tells them
every moment whether its connection is live. The siblings serve their own browsers from
those ticks. At most one extra exchange connection per isolated host.

Datagrams are fire-and-forget and never block the sender: a sibling that is gone or slow
loses ticks, not the source's time. The lock dies with its holder's process, so a crashed
source frees the tier for the next worker at once.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable

import gevent

from pricefeed.ticks import PriceTick

log = logging.getLogger(__name__)

TICK, STATUS = b"T", b"S"
SIBLINGS_REFRESH_SECONDS = 1.0
# A source's "live" holds this long without another status. Statuses come every monitor pass
# (0.25 s); a busy sibling may miss a few, and a dead one loses its lock at once anyway.
LIVE_FOR_SECONDS = 3.0


def instance_directory(prefix: str) -> str:
    """The directory the workers of this gunicorn instance share: named for the master's pid
    (read after the fork), private to the service's user."""
    safe_prefix = "".join(c if c.isalnum() or c in "-_" else "_" for c in prefix)[:40]
    return os.path.join(tempfile.gettempdir(), f"pricefeed-{safe_prefix}-{os.getppid()}")


class HostTier:
    def __init__(self, prefix: str, deliver: Callable[[PriceTick], None], clock: Callable[[], float] = time.monotonic):
        self.prefix = prefix
        self._deliver = deliver
        self._clock = clock
        self.directory = ""
        self._lock_fd: int | None = None
        self._sock: socket.socket | None = None
        self._path = ""
        self._siblings: list[str] = []
        self._siblings_at = 0.0
        self._greenlet: gevent.Greenlet | None = None
        self._source_live_at: float | None = None
        self._source_data_age: float | None = None
        self.shared = 0
        self.received = 0
        self.malformed = 0

    def start(self) -> None:
        """Bind this worker's socket (after the fork: the directory is named for the master's pid)."""
        if self._sock is not None:
            return
        self.directory = instance_directory(self.prefix)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._path = os.path.join(self.directory, f"worker-{os.getpid()}.sock")
        if os.path.exists(self._path):
            os.unlink(self._path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self._path)
        sock.setblocking(False)
        self._sock = sock
        self._greenlet = gevent.spawn(self._receive_forever)

    def stop(self) -> None:
        self.release()
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                os.unlink(self._path)
            except OSError:
                pass

    # -- the one connection of the host's local tier --------------------------------------

    @property
    def holding(self) -> bool:
        return self._lock_fd is not None

    def claim(self) -> bool:
        """True if this worker runs (or may now run) the host's local-tier connection."""
        if self._lock_fd is not None:
            return True
        if not self.directory:
            return True            # not started (no host to share with): behave as before
        fd = os.open(os.path.join(self.directory, "local-tier.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        log.warning("host tier: this worker runs the host's local-tier connection")
        return True

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)          # closing drops the flock
            self._lock_fd = None

    def share(self, tick: PriceTick) -> None:
        """Hand a tick this worker delivered locally to every sibling (the source only)."""
        if self.holding:
            self._send(TICK + tick.to_json().encode())
            self.shared += 1

    def share_status(self, live: bool, data_age: float | None) -> None:
        if self.holding:
            age = "" if data_age is None else f"{data_age:.3f}"
            self._send(STATUS + (b"1" if live else b"0") + age.encode())

    def _send(self, datagram: bytes) -> None:
        if self._sock is None:
            return
        for path in self._sibling_paths():
            try:
                self._sock.sendto(datagram, path)
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    self._siblings_at = 0.0          # a sibling went away: list them again
                # EAGAIN: that sibling is behind; it loses this tick, we lose no time

    def _sibling_paths(self) -> list[str]:
        now = self._clock()
        if now - self._siblings_at > SIBLINGS_REFRESH_SECONDS:
            self._siblings_at = now
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            self._siblings = [os.path.join(self.directory, n) for n in names
                              if n.startswith("worker-") and n.endswith(".sock")
                              and os.path.join(self.directory, n) != self._path]
        return self._siblings

    # -- a sibling's side ----------------------------------------------------------------

    def source_live(self) -> bool:
        """A sibling runs the host's local-tier connection and says it is live."""
        at = self._source_live_at
        return at is not None and self._clock() - at < LIVE_FOR_SECONDS

    def source_data_age(self) -> float | None:
        return self._source_data_age if self.source_live() else None

    def _receive_forever(self) -> None:
        from gevent.socket import wait_read
        # Its own reference: stop() closes and forgets the socket while this greenlet may be
        # about to wake, and a closed socket ends the loop rather than the worker's log.
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                wait_read(sock.fileno())
            except (OSError, ValueError):   # closed under us: stopping
                return
            while True:
                try:
                    datagram = sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError:
                    return
                self._on_datagram(datagram)

    def _on_datagram(self, datagram: bytes) -> None:
        try:
            if datagram.startswith(TICK):
                self.received += 1
                self._deliver(PriceTick.from_json(datagram[1:]))
            elif datagram.startswith(STATUS):
                if datagram[1:2] == b"1":
                    self._source_live_at = self._clock()
                    seconds = datagram[2:]
                    self._source_data_age = float(seconds) if seconds else None
                else:
                    self._source_live_at = None
        except (ValueError, TypeError):
            self.malformed += 1
