"""gunicorn server hooks that start and stop the feed at the right moments.

Import them into your gunicorn.conf.py. `post_worker_init` runs after the gevent
worker has monkey-patched and re-initialised its hub (`post_fork` runs before:
greenlets started there would use unpatched sockets).
"""
from __future__ import annotations

from typing import Any

from .views import EXTENSION_KEY


def _extension(worker: Any):
    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", None) or {}
    return extensions.get(EXTENSION_KEY)


def post_worker_init(worker: Any) -> None:
    extension = _extension(worker)
    if extension is None:
        worker.log.warning("pricefeed: the WSGI app has no PriceFeed extension; nothing started")
        return
    extension.start()


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
