"""gunicorn settings for pricefeed: gevent workers, feed started after the worker has patched.

Environment: PRICEFEED_BIND (default 127.0.0.1:8000), PRICEFEED_WORKERS (default 1
without Redis — each worker would open its own exchange connection — else 2).
"""
import os

bind = os.environ.get("PRICEFEED_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("PRICEFEED_WORKERS", "2" if os.environ.get("PRICEFEED_REDIS_URL") else "1"))
worker_class = "gevent"
# Every open stream holds one of these; PRICEFEED_MAX_CLIENTS stays below it so
# the app can still answer 503 (with Retry-After) instead of gunicorn refusing silently.
worker_connections = int(os.environ.get("PRICEFEED_WORKER_CONNECTIONS", "1000"))
# For gevent workers this is only a heartbeat: a hub blocked longer gets the worker killed.
timeout = 30
# Open streams never finish by themselves: pricefeed closes them as soon as a worker is told
# to exit (gunicorn_hooks._stop_when_told_to_exit), so this is rarely reached.
graceful_timeout = 10
keepalive = 5
# 0 lets gunicorn read request lines up to its 1 MB hard cap, so the app can answer an
# oversized query with its own JSON 400 rather than gunicorn's plain-text one.
limit_request_line = 0
# Never preload: the app must be imported after the worker monkey-patched (TRAPS.md).
preload_app = False
accesslog = os.environ.get("PRICEFEED_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("PRICEFEED_LOG_LEVEL", "info").lower()
# gunicorn 27's control socket has one default path per user: two instances on a host
# would fight over it. pricefeed does not use it.
control_socket_disable = True


# The hooks import pricefeed only inside the worker, after it has monkey-patched:
# importing it here would load ssl, socket users and redis into the master unpatched.
def post_worker_init(worker):
    from pricefeed.web.gunicorn_hooks import post_worker_init as start
    start(worker)


def worker_int(worker):
    from pricefeed.web.gunicorn_hooks import worker_int as stop
    stop(worker)


def worker_abort(worker):
    from pricefeed.web.gunicorn_hooks import worker_abort as stop
    stop(worker)


def worker_exit(server, worker):
    from pricefeed.web.gunicorn_hooks import worker_exit as stop
    stop(server, worker)


# Metrics (issue 12): one directory shared by all workers' metric files, and a dead
# worker's live gauges removed. Stdlib-only functions: nothing is imported into the master.
def on_starting(server):
    from pricefeed.web.metrics_process import on_starting as prepare
    prepare(server)


def child_exit(server, worker):
    from pricefeed.web.metrics_process import child_exit as forget
    forget(server, worker)


def on_exit(server):
    from pricefeed.web.metrics_process import on_exit as clean_up
    clean_up(server)
