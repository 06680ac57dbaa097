"""gunicorn server hooks that start and stop the feed at the right moments.

A gunicorn.conf.py gets them with `from pricefeed.gunicorn import *` (pricefeed/gunicorn.py).
`post_worker_init` runs after the gevent worker has monkey-patched and re-initialised its
hub (`post_fork` runs before: greenlets started there would use unpatched sockets).

Standard library only at module level: `child_exit` runs in the master, which must not
import Flask or redis (docs/library-facts.md); the worker hooks import the app's modules when called.
"""
from __future__ import annotations

import time
from typing import Any

# pricefeed.web.api.EXTENSION_KEY, repeated so that importing this module stays light.
EXTENSION_KEY = "pricefeed"

GRACEFUL_MARGIN_S = 3.0   # of graceful_timeout, left for the handover and the exit


def _extension(worker: Any):
    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", None) or {}
    return extensions.get(EXTENSION_KEY)


def post_worker_init(worker: Any) -> None:
    extension = _extension(worker)
    if extension is None:
        worker.log.warning("pricefeed: the WSGI app has no PriceFeed extension; nothing started")
        return
    node = extension.node
    # The numbers in force: gunicorn's own worker_connections (the host's config may set it).
    extension.apply_capacity(getattr(worker.cfg, "worker_connections", None))
    # Direct socket writes need gevent's non-blocking sockets and gunicorn's own response
    # framing: its gevent worker only (not gevent_pywsgi, not sync/gthread). TLS, HTTP/1.0, the
    # uwsgi protocol and rewriting middleware are ruled out per stream (sse_response.direct_socket).
    node.direct_writes = node.config.direct_writes and type(worker).__name__ == "GeventWorker"
    _keep_a_connection_reserve(worker, node)
    from pricefeed.web.gunicorn_limits import answer_limits_in_json   # in the worker: Flask is fine here
    answer_limits_in_json(worker)
    from pricefeed.web import gunicorn_accept
    if gunicorn_accept.installable(worker):
        # Fast at the door when overloaded: a full listen queue would make every 503 late.
        gunicorn_accept.accept_in_batches(node.config.accept_batch)
        gunicorn_accept.refuse_new_streams_at_the_door(worker, node, node.config.url_prefix)
    extension.start()
    import gevent
    gevent.spawn(_stop_when_told_to_exit, worker, extension)


def _keep_a_connection_reserve(worker: Any, node: Any) -> None:
    """Streams may take at most worker_connections minus PRICEFEED_CONNECTION_RESERVE connections.

    gunicorn's gevent worker accepts at most worker_connections at once; past that a new
    connection waits in the kernel's backlog, unanswered. Streams never end by themselves, so
    if they could take every connection, /health and /prices (and the 503 that tells a
    browser to come back) would wait behind them. Capping the hub below the pool keeps
    `reserve` connections for short requests, which finish and hand their slot on.
    """
    pool = getattr(getattr(worker, "cfg", None), "worker_connections", None)
    if not isinstance(pool, int):
        return
    reserve = min(node.config.connection_reserve, pool // 2)    # a small pool keeps half for streams
    cap = max(1, pool - reserve)
    if node.hub.max_clients > cap:
        worker.log.warning("pricefeed: PRICEFEED_MAX_CLIENTS=%d leaves fewer than %d of worker_connections=%d "
                           "for /health and /prices; streams capped at %d per worker",
                           node.hub.max_clients, reserve, pool, cap)
        node.hub.max_clients = cap


def _stop_when_told_to_exit(worker: Any, extension: Any) -> None:
    """Hand over as soon as the worker is told to exit, then close the streams in a spread.

    Before that, the connections that are not streams (gunicorn_drain.py): no more accepted,
    and the idle keep-alive ones closed so that browsers send their next request to a new worker.

    On SIGTERM gunicorn's gevent worker only stops accepting and waits up to
    graceful_timeout for open requests to finish — and streams never finish, so the
    master SIGKILLs it first and `worker_exit` never runs: no lease release, no
    clean close. Stopping here hands the lease over and closes the streams over
    PRICEFEED_RESTART_SPREAD seconds (delivery/drain.py), so the browsers come back
    spread out rather than all in one second, and the worker exits well inside
    graceful_timeout.
    """
    import gevent
    while worker.alive:
        gevent.sleep(0.02)
    from pricefeed.web import gunicorn_drain
    # First the connections that are not streams: accept no more, and close the idle keep-alive
    # ones, on which a returning browser would be told "shutting down" by this worker.
    started = time.perf_counter()
    servers = gunicorn_drain.stop_accepting()
    idle = gunicorn_drain.close_idle_keepalive()
    worker.log.warning("pricefeed: stopping: %d listener(s) closed, %d idle keep-alive connection(s) closed in %.3f s",
                       servers, idle, time.perf_counter() - started)
    config = extension.config
    delay, spread = restart_timing(config.restart_close_delay, config.restart_spread, worker.cfg.graceful_timeout)
    _stop(worker, spread, delay)


def restart_timing(delay_s: float, spread_s: float, graceful_timeout_s: float) -> tuple[float, float]:
    """(delay, spread), kept together inside graceful_timeout: the handover takes up to ~1.5 s
    and the worker must still exit before the master's SIGKILL. The spread gives way first."""
    budget = max(0.0, graceful_timeout_s - GRACEFUL_MARGIN_S)
    delay = min(delay_s, budget / 3)
    return delay, max(0.0, min(spread_s, budget - delay))


def worker_int(worker: Any) -> None:
    _stop(worker)


def worker_abort(worker: Any) -> None:
    _stop(worker)


def worker_exit(server: Any, worker: Any) -> None:
    _stop(worker)


def _stop(worker: Any, spread_s: float = 0.0, delay_s: float = 0.0) -> None:
    extension = _extension(worker)
    if extension is not None:
        try:
            extension.stop(spread_s, delay_s)
        except Exception:  # noqa: BLE001 - shutting down: log and carry on
            worker.log.exception("pricefeed: stop failed")


def child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker exited (clean exit, crash or SIGKILL): forget its
    per-process state kept outside it — its Prometheus live-gauge files (metrics_process.py).
    Standard library only: this runs in the master."""
    from pricefeed.web.metrics_process import child_exit as forget
    forget(server, worker)

