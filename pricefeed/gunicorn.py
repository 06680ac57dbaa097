"""Everything pricefeed needs from gunicorn, for one line in a host app's gunicorn.conf.py:

    from pricefeed.gunicorn import *

gives pricefeed's worker class (`pricefeed.server.worker.Worker`, a subclass of gunicorn's
gevent worker: it derives its capacity, starts the feed, accepts in batches, refuses new
streams at the door while shedding, answers gunicorn's limit errors in JSON, and stops in
one ordered sequence — docs/gunicorn-worker.md), `backlog`, `preload_app = False`, and the
hooks for the master's own duties: `on_starting` / `on_exit` (the metrics directory) and
`child_exit` (a dead worker's files).

Settings the host writes after the import win. The host's own worker hooks
(`post_worker_init`, `worker_int`, `worker_exit`, ...) need nothing of ours: the worker
does its part itself. A master hook the host also needs is composed with ours:

    child_exit = pricefeed.gunicorn.compose(pricefeed.gunicorn.child_exit, my_child_exit)

Standard library only at module level, and the worker class named by its dotted path: the
master must not import Flask, redis, ssl or gevent's users before the workers patch
(docs/library-facts.md).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["worker_class", "backlog", "preload_app", "on_starting", "on_exit", "child_exit"]

worker_class = "pricefeed.server.worker.Worker"
# Never preload: the app must be imported after the worker monkey-patched (docs/library-facts.md).
preload_app = False
# The listen queue: connections the kernel has completed but no worker has taken yet. After a
# restart thousands of browsers come back within seconds; once the queue is full the kernel drops
# their handshakes and each retries 1 s, then 3 s, later (bench/restart.py: the tail past p99).
# gunicorn's default is 2048; 4096 is what Linux allows without raising net.core.somaxconn
# (the kernel silently caps it there).
backlog = 4096


def __getattr__(name: str) -> Any:
    # `pricefeed.gunicorn.Worker`, imported only when asked for (it imports gevent).
    if name == "Worker":
        from pricefeed.server.worker import Worker
        return Worker
    raise AttributeError(f"module 'pricefeed.gunicorn' has no attribute {name!r}")


def on_starting(server: Any) -> None:
    """In the master, before any worker: one directory for every worker's metric files
    (PROMETHEUS_MULTIPROC_DIR, made fresh when unset, emptied when given)."""
    from pricefeed.web.metrics.process_files import on_starting as prepare
    prepare(server)


def on_exit(server: Any) -> None:
    """In the master, last: remove the metrics directory if on_starting made it."""
    from pricefeed.web.metrics.process_files import on_exit as clean_up
    clean_up(server)


def child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker exited (clean exit, crash or SIGKILL): forget its
    per-process state kept outside it — its Prometheus live-gauge files (pricefeed/web/metrics/process_files.py)."""
    from pricefeed.web.metrics.process_files import child_exit as forget
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
