"""What a stopping gevent worker does with its connections that are not streams.

Found with a real Chromium across a graceful restart (tests/browser/test_es_module.py):
the page's stream was closed with a `retry:`, the page came back after it — and got
`503 shutting_down` from the old worker, twice, seconds apart, before it reached a new one.
It had not connected to the old worker again: it reused idle keep-alive connections it
already held to it (the page, its scripts, `/prices`). A stopping gunicorn gevent worker
stops accepting, but the connections it holds between requests stay open until their
`keepalive` runs out (5 s), and every request sent on one is answered by the worker that
is leaving. A crowd of browsers coming back from a restart would meet the same.

So as soon as the worker is told to stop (web/gunicorn_hooks.py), before it closes its
streams:
1. it stops accepting at once (gunicorn's own loop does so only at its next turn, up to a
   second later; a connection accepted then would only be told to go elsewhere);
2. it closes every connection that is idle between two requests — parked in gunicorn's
   keep-alive wait for the next request head after having served one. A browser (or nginx)
   that finds a reused connection closed sends its request again on a new one, which a new
   worker accepts. Connections inside a request are left alone (gunicorn closes them after
   their response: the worker is no longer alive), and so are streams, which the drain
   closes in its spread, and connections that have not finished their first request.

Installed with gunicorn_accept.py's StreamServer (post_worker_init), on gunicorn's own gevent
worker only; the order in gunicorn_hooks.py matters: stop accepting first, then sweep.
"""
from __future__ import annotations

import socket
import weakref
from typing import Any

import gevent

# This worker's listening servers (each with the pool of greenlets serving its connections).
_servers: "weakref.WeakSet[Any]" = weakref.WeakSet()


def track_server(server: Any) -> None:
    """Called by the StreamServer gunicorn_accept.py puts in place, when it starts. Nothing is
    kept per connection: each is found, when it matters, in its server's pool (a wrapper
    around every connection's handler would cost each open stream a parked frame)."""
    _servers.add(server)


def stop_accepting() -> int:
    """Close this worker's listening servers now (gunicorn's loop would at its next turn)."""
    closed = 0
    for server in list(_servers):
        try:
            server.close()      # gunicorn's own close() after this one does nothing more
            closed += 1
        except Exception:  # noqa: BLE001 - stopping: one server failing must not keep the rest open
            pass
    return closed


def close_idle_keepalive() -> int:
    """Close the connections waiting for their next request after a first one. Returns how many."""
    closed = 0
    for client, greenlet in _connections():
        if greenlet.dead or not _between_requests(greenlet):
            continue
        try:
            client.shutdown(socket.SHUT_RDWR)   # its greenlet reads the end and gunicorn closes it
            closed += 1
        except OSError:
            pass
    return closed


def _connections() -> list[tuple[Any, gevent.Greenlet]]:
    """(client socket, greenlet) of every connection being served: gevent's StreamServer spawns
    each into its pool as `_handle_and_close_when_done(handle, close, (client, address))`."""
    found = []
    for server in list(_servers):
        pool = getattr(server, "pool", None)
        for greenlet in list(getattr(pool, "greenlets", ())):
            args = getattr(greenlet, "args", ())
            client = args[2][0] if len(args) == 3 and isinstance(args[2], tuple) and args[2] else None
            if hasattr(client, "shutdown"):
                found.append((client, greenlet))
    return found


def _between_requests(greenlet: gevent.Greenlet) -> bool:
    """True if the greenlet is parked in gunicorn's keep-alive loop, reading the next request
    head of a connection that has already had one (its parser holds the previous message),
    and not inside a request. An unrecognised stack counts as busy: left alone.

    Walked from the innermost frame out, and only through gevent's and gunicorn's own: the
    first frame of anything else (the app, a stream parked in pricefeed's code, the door)
    means busy. A stream's greenlet is left at its first pricefeed frame, a few frames in:
    measured with 10,000 streams open, 0.12 s for the whole sweep, once per stop."""
    frame = getattr(greenlet, "gr_frame", None)
    reading = False
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        if "/gunicorn/" in filename:
            if code.co_name in ("handle_request", "handle_http2"):
                return False
            if "/gunicorn/http/" in filename:
                reading = True
            elif code.co_name == "handle" and "/gunicorn/workers/" in filename:
                parser = frame.f_locals.get("parser")
                return reading and getattr(parser, "mesg", None) is not None
        elif "/gevent/" not in filename and not filename.startswith("<"):
            return False
        frame = frame.f_back
    return False
