"""gunicorn server hooks that start and stop the feed at the right moments.

Import them into your gunicorn.conf.py. `post_worker_init` runs after the gevent
worker has monkey-patched and re-initialised its hub (`post_fork` runs before:
greenlets started there would use unpatched sockets).
"""
from __future__ import annotations

from typing import Any

from pricefeed.web.api import EXTENSION_KEY
from pricefeed.web.gunicorn_limits import answer_limits_in_json


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
    # Direct socket writes need gevent's non-blocking sockets and gunicorn's own response
    # framing: its gevent worker only (not gevent_pywsgi, not sync/gthread). TLS, HTTP/1.0, the
    # uwsgi protocol and rewriting middleware are ruled out per stream (sse_response.direct_socket).
    node.direct_writes = node.config.direct_writes and type(worker).__name__ == "GeventWorker"
    _keep_a_connection_reserve(worker, node)
    answer_limits_in_json(worker)
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
    """Hand over as soon as the worker is told to exit.

    On SIGTERM gunicorn's gevent worker only stops accepting and waits up to
    graceful_timeout for open requests to finish — and streams never finish, so the
    master SIGKILLs it first and `worker_exit` never runs: no lease release, no
    clean close. Stopping here closes the streams, so the worker exits in moments.
    """
    import gevent
    while worker.alive:
        gevent.sleep(0.02)
    _stop(worker)


def worker_int(worker: Any) -> None:
    _stop(worker)


def worker_abort(worker: Any) -> None:
    _stop(worker)


def worker_exit(server: Any, worker: Any) -> None:
    _stop(worker)


def _stop(worker: Any) -> None:
    extension = _extension(worker)
    if extension is not None:
        try:
            extension.stop()
        except Exception:  # noqa: BLE001 - shutting down: log and carry on
            worker.log.exception("pricefeed: stop failed")
