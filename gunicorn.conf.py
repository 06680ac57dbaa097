"""gunicorn settings for the pricefeed service: the one-line setup plus the service's own choices.

`from pricefeed.gunicorn import *` brings pricefeed's worker class (gunicorn's gevent worker,
which derives worker_connections from the open-files limit, starts the feed after patching
and hands the lease over on exit), no preloading, and the master's hooks.

Environment: PRICEFEED_BIND (default 127.0.0.1:8000), PRICEFEED_WORKERS (default 1
without Redis — each worker would open its own exchange connection — else 2),
PRICEFEED_WORKER_CONNECTIONS (default: derived), PRICEFEED_LOG_FORMAT (text|json),
PRICEFEED_LOG_LEVEL, PRICEFEED_ACCESS_LOG.
"""
import os

from pricefeed.gunicorn import *  # noqa: F401,F403 - worker class, worker_connections, hooks
from pricefeed.log_format import logconfig_dict as pricefeed_logconfig

# One address, or several separated by commas (e.g. a host address and loopback).
bind = [address.strip() for address in os.environ.get("PRICEFEED_BIND", "127.0.0.1:8000").split(",") if address.strip()]
workers = int(os.environ.get("PRICEFEED_WORKERS", "2" if os.environ.get("PRICEFEED_REDIS_URL") else "1"))
# For gevent workers this is only a heartbeat: a hub blocked longer gets the worker killed.
timeout = 30
# Open streams never finish by themselves: pricefeed closes them as soon as a worker is told
# to exit, in one ordered stop that ends inside this (pricefeed/server/worker.py).
graceful_timeout = 10
keepalive = 5
# The request line and headers bounded before their cost grows: gunicorn's pure-Python parser
# re-scans a line as it arrives (quadratic in its length), so unbounded (0) one 8 MB line froze
# a worker for 16 s (bench/request_line.py). 8190 is gunicorn's largest bound: a longer line
# is refused after its first 8 KB, in about a millisecond, with a JSON 414 (pricefeed/server/worker.py);
# shorter oversized queries get the app's JSON 400 (PRICEFEED_MAX_QUERY_LENGTH).
limit_request_line = 8190
# gunicorn's pure-Python parser, whatever else is installed: the limits above are measured with
# it (gunicorn's optional C parser was slower on long lines here, bench/request_line.py).
http_parser = "python"
limit_request_fields = 100
limit_request_field_size = 8190
# Never preload: the app must be imported after the worker monkey-patched (docs/library-facts.md).
preload_app = False
accesslog = os.environ.get("PRICEFEED_ACCESS_LOG") or None
# gunicorn's combined format, then why the door refused a stream request (at_capacity, or the
# 400's error), "-" for every other request: pricefeed/web/streams/door.py.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({pricefeed.refused}e)s'
errorlog = "-"
loglevel = os.environ.get("PRICEFEED_LOG_LEVEL", "info").lower()
# gunicorn's own lines and the app's in one format: key=value text, or JSON (PRICEFEED_LOG_FORMAT=json).
logconfig_dict = pricefeed_logconfig(os.environ.get("PRICEFEED_LOG_FORMAT", "text").strip().lower(), loglevel,
                                     accesslog)
# gunicorn 27's control socket has one default path per user: two instances on a host
# would fight over it. pricefeed does not use it.
control_socket_disable = True
