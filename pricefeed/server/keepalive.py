"""Which connections sit idle between two requests, and closing them when the worker stops.

Found with a real Chromium across a graceful restart: the page's stream was closed with a
`retry:`, the page came back — and got `503 shutting_down` from the old worker, twice,
seconds apart, before it reached a new one. It had not connected to the old worker again:
it reused idle keep-alive connections it already held to it (the page, its scripts,
`/prices`). A stopping worker stops accepting, but the connections it holds between
requests stay open until their `keepalive` runs out (5 s), and every request sent on one
is answered by the worker that is leaving.

gunicorn's async worker reads each request head of a kept-alive connection inside
`with worker.timeout_ctx():` (gunicorn/workers/base_async.py), a gevent Timeout of
`keepalive` seconds that, when it fires, ends the connection quietly: the read is
abandoned, no request, gunicorn closes the socket. The worker's `timeout_ctx` returns a
`KeepAliveWait` from here — that same Timeout, which also notes its greenlet while the
wait lasts. Closing an idle connection is firing its timeout early: gunicorn's own
end of a keep-alive, from the same place.

Only waits after a first request count as idle: a connection that has not sent its first
request yet may be a browser whose request is on its way (closing it would be an error
for that request, not a retry). Nor is a connection whose next request has already
arrived, unread: closing it then would reset it under that request (nginx, reusing its
upstream connections, logged `upstream prematurely closed`); gunicorn reads it and, the
worker no longer alive, answers it with `Connection: close`. The server that accepted the
connection names its socket (accept.py); nothing else is kept per connection, and weakly
(no wrapper around the handler: an open stream parks no extra frame).
"""
from __future__ import annotations

import array
import fcntl
import termios
import weakref
from typing import Any

import gevent
from gevent import getcurrent


class KeepAliveWait(gevent.Timeout):
    """gunicorn's keep-alive Timeout (silent: `exception=False`), known to its registry while it waits."""

    def __init__(self, registry: KeepAliveWaits, seconds: float):
        # gevent documents exception=False for a silent timeout; the stubs leave it out.
        super().__init__(seconds, False)  # type: ignore[arg-type]
        self._registry = registry
        self._greenlet: Any = None

    def __enter__(self) -> KeepAliveWait:
        self._greenlet = getcurrent()
        self._registry._enter(self._greenlet, self)
        return super().__enter__()

    def __exit__(self, typ, value, tb):
        self._registry._leave(self._greenlet, self)
        return super().__exit__(typ, value, tb)


class KeepAliveWaits:
    """The connections of one worker waiting for their next request head."""

    def __init__(self) -> None:
        self._served: weakref.WeakSet[Any] = weakref.WeakSet()   # greenlets past their first wait
        self._sockets: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._idle: dict[Any, KeepAliveWait] = {}
        self._closing = False

    def serving(self, greenlet: Any, sock: Any) -> None:
        """`greenlet` serves the connection on `sock` (called by the server that spawned it)."""
        self._sockets[greenlet] = sock

    def wait(self, seconds: float) -> KeepAliveWait:
        return KeepAliveWait(self, seconds)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close_idle(self) -> int:
        """End every idle wait now, and from now on each one that begins (a request that was
        in flight when the worker was told to stop finishes, then would wait for another).
        Returns how many were idle."""
        self._closing = True
        idle = list(self._idle.items())
        for greenlet, wait in idle:
            self._end_soon(greenlet, wait)
        return len(idle)

    def _enter(self, greenlet: Any, wait: KeepAliveWait) -> None:
        if greenlet not in self._served:
            self._served.add(greenlet)           # the first request's wait: not idle
            return
        self._idle[greenlet] = wait
        if self._closing:
            self._end_soon(greenlet, wait)

    def _leave(self, greenlet: Any, wait: KeepAliveWait) -> None:
        if self._idle.get(greenlet) is wait:
            del self._idle[greenlet]

    def _end_soon(self, greenlet: Any, wait: KeepAliveWait) -> None:
        # From the hub, as gevent fires a Timeout: the greenlet is not running then, so the
        # check that it still waits and the throw cannot be separated by its next request.
        gevent.get_hub().loop.run_callback(self._end, greenlet, wait)

    def _end(self, greenlet: Any, wait: KeepAliveWait) -> None:
        if self._idle.get(greenlet) is not wait or greenlet.dead:
            return
        if _unread_bytes(self._sockets.get(greenlet)) > 0:
            return                               # its next request is here: answered, then closed
        greenlet.throw(wait)                     # as if its keepalive ran out: gunicorn closes it


def _unread_bytes(sock: Any) -> int:
    """Bytes received on `sock` and not read yet (FIONREAD: a system call that never waits)."""
    if sock is None:
        return 0
    try:
        count = array.array("i", [0])
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
        return count[0]
    except (OSError, ValueError):
        return 0
