"""The shop's gunicorn config: its own settings, and pricefeed's in one line."""
import os

import pricefeed.gunicorn
from pricefeed.gunicorn import *  # noqa: F401,F403 - gevent worker, worker_connections, pricefeed's hooks

bind = os.environ.get("SHOP_BIND", "127.0.0.1:8100")
workers = int(os.environ.get("SHOP_WORKERS", "1"))
control_socket_disable = True


# The shop has hooks of its own: each calls pricefeed's, so both run.
def post_worker_init(worker):
    pricefeed.gunicorn.post_worker_init(worker)
    worker.log.info("shop: worker %s serving", worker.pid)


def _shop_worker_exit(server, worker):
    worker.log.info("shop: worker %s leaving", worker.pid)


worker_exit = pricefeed.gunicorn.compose(pricefeed.gunicorn.worker_exit, _shop_worker_exit)
