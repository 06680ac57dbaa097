"""gunicorn settings for pricefeed: gevent workers, feed started after the worker has patched.

Environment: PRICEFEED_BIND (default 127.0.0.1:8000), PRICEFEED_WORKERS (default 1
without Redis — each worker would open its own exchange connection — else 2).
"""
import os

bind = os.environ.get("PRICEFEED_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("PRICEFEED_WORKERS", "2" if os.environ.get("PRICEFEED_REDIS_URL") else "1"))
worker_class = "gevent"
# Every open stream holds one of these; streams are capped at this minus
# PRICEFEED_CONNECTION_RESERVE (gunicorn_hooks), so /health, /prices and the 503 (with
# Retry-After) for one stream too many always find a free connection.
worker_connections = int(os.environ.get("PRICEFEED_WORKER_CONNECTIONS", "1000"))
# For gevent workers this is only a heartbeat: a hub blocked longer gets the worker killed.
timeout = 30
# Open streams never finish by themselves: pricefeed closes them as soon as a worker is told
# to exit (gunicorn_hooks._stop_when_told_to_exit), so this is rarely reached.
graceful_timeout = 10
keepalive = 5
# The request line and headers bounded before their cost grows: gunicorn's pure-Python parser
# re-scans a line as it arrives (quadratic in its length), so unbounded (0) one 8 MB line froze
# a worker for 16 s (bench/request_line.py). 8190 is gunicorn's largest bound: a longer line
# is refused after its first 8 KB, in about a millisecond, with a JSON 414 (gunicorn_hooks);
# shorter oversized queries get the app's JSON 400 (PRICEFEED_MAX_QUERY_LENGTH).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
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
