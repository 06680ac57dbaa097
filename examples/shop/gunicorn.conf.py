"""The shop's gunicorn config: its own settings, and pricefeed's in one line."""
import os

from pricefeed.gunicorn import *  # noqa: F401,F403 - pricefeed's worker class and the master's hooks

bind = os.environ.get("SHOP_BIND", "127.0.0.1:8100")
workers = int(os.environ.get("SHOP_WORKERS", "1"))
control_socket_disable = True


# The shop's own worker hooks: pricefeed's worker starts and stops the feed itself, so
# they need not call or compose anything of pricefeed's.
def post_worker_init(worker):
    worker.log.info("shop: worker %s serving", worker.pid)


def worker_exit(server, worker):
    worker.log.info("shop: worker %s leaving", worker.pid)
