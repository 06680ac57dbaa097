"""Everything pricefeed needs from gunicorn, for one line in a host app's gunicorn.conf.py:

    from pricefeed.gunicorn import *

gives the gevent worker class, `worker_connections` derived from the open-files limit
(raised to the hard limit here, in the master, so every worker inherits it; capacity.py),
`preload_app = False`, and the hooks: `post_worker_init` starts the feed once the worker
has monkey-patched; `worker_int`, `worker_abort` and `worker_exit` stop it and hand the
lease over; `child_exit` (in the master) cleans up after a dead worker.

Settings the host writes after the import win. A hook the host also needs is composed
with ours, either by calling ours from its own:

    import pricefeed.gunicorn

    def post_worker_init(worker):
        pricefeed.gunicorn.post_worker_init(worker)
        ...                                   # the host's own

or with `compose`, which keeps gunicorn's arity check happy:

    post_worker_init = pricefeed.gunicorn.compose(pricefeed.gunicorn.post_worker_init, my_post_worker_init)

Standard library only at module level: the master must not import Flask, redis, ssl or
gevent's users before the workers patch (docs/library-facts.md). The hooks import the package inside the
worker, after patching.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from pricefeed.capacity import gunicorn_worker_connections

__all__ = ["worker_class", "worker_connections", "backlog", "preload_app", "on_starting", "on_exit", "post_worker_init",
           "worker_int", "worker_abort", "worker_exit", "child_exit"]

worker_class = "gevent"
# Streams per worker are bounded by it; PRICEFEED_WORKER_CONNECTIONS wins, else derived.
worker_connections = gunicorn_worker_connections()
# Never preload: the app must be imported after the worker monkey-patched (docs/library-facts.md).
preload_app = False
# The listen queue: connections the kernel has completed but no worker has taken yet. After a
# restart thousands of browsers come back within seconds; once the queue is full the kernel drops
# their handshakes and each retries 1 s, then 3 s, later (bench/restart.py: the tail past p99).
# gunicorn's default is 2048; 4096 is what Linux allows without raising net.core.somaxconn
# (the kernel silently caps it there).
backlog = 4096


def on_starting(server: Any) -> None:
    """In the master, before any worker: one directory for every worker's metric files
    (PROMETHEUS_MULTIPROC_DIR, made fresh when unset, emptied when given)."""
    from pricefeed.web.metrics_process import on_starting as prepare
    prepare(server)


def on_exit(server: Any) -> None:
    """In the master, last: remove the metrics directory if on_starting made it."""
    from pricefeed.web.metrics_process import on_exit as clean_up
    clean_up(server)


def post_worker_init(worker: Any) -> None:
    """In the worker, after gevent's patching: raise the open-files limit and start the feed."""
    from pricefeed.web.gunicorn_hooks import post_worker_init as start
    start(worker)


def worker_int(worker: Any) -> None:
    """SIGINT/SIGQUIT: stop the feed and release the lease at once."""
    from pricefeed.web.gunicorn_hooks import worker_int as stop
    stop(worker)


def worker_abort(worker: Any) -> None:
    """SIGABRT (the heartbeat timeout): release the lease if we still can."""
    from pricefeed.web.gunicorn_hooks import worker_abort as stop
    stop(worker)


def worker_exit(server: Any, worker: Any) -> None:
    """The worker is exiting: stop the feed and hand the lease over."""
    from pricefeed.web.gunicorn_hooks import worker_exit as stop
    stop(server, worker)


def child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker exited (however it died): forget its per-process state."""
    from pricefeed.web.gunicorn_hooks import child_exit as forget
    forget(server, worker)


def compose(*hooks: Callable[..., Any]) -> Callable[..., Any]:
    """One gunicorn hook that runs `hooks` in order (all take the same arguments).

    The result has the first hook's signature, which gunicorn's arity check reads.
    """
    if not hooks:
        raise ValueError("compose() needs at least one hook")

    @functools.wraps(hooks[0])
    def composed(*args: Any) -> None:
        for hook in hooks:
            hook(*args)
    return composed
