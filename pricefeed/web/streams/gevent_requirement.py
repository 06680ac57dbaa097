"""Streams need gevent: what a server without it (`flask run`, a sync worker) is told, and its clients.

Without gevent's monkey patching the feed cannot start (no prices) and each open stream
would pin a thread for good. Such a server says so once in its log (at start-up under
`flask run`, else at the first request), and every stream it is asked for gets a JSON 503
`gevent_required` naming what to run instead. Flask's test
client (no server) is left alone: tests drive the views without gevent.
"""
from __future__ import annotations

import logging

from pricefeed.web.errors import ApiError

log = logging.getLogger(__name__)

WHAT_TO_RUN = ("run `flask pricefeed serve` for development, or gunicorn with the gevent worker "
               "(`from pricefeed.gunicorn import *` in gunicorn.conf.py) in production")


class GeventRequirement:
    """Per app: has the explanation been logged yet, and refuse streams while unpatched."""

    def __init__(self) -> None:
        self.explained = False
        self._patched = False

    def patched(self) -> bool:
        if not self._patched:       # once patched, a process stays patched: asked once per stream
            from gevent import monkey
            self._patched = monkey.is_module_patched("socket")
        return self._patched

    def explain_once(self) -> None:
        if not self.explained:
            self.explained = True
            log.warning("pricefeed needs gevent and this server does not run it (flask run?): no prices are "
                        "fetched and streams answer 503 gevent_required; %s", WHAT_TO_RUN)

    def explain_if_flask_run(self) -> None:
        """At start-up under `flask run` (the CLI is loading the app for its `run` command): say it now."""
        import click
        context = click.get_current_context(silent=True)
        if context is not None and context.info_name == "run" and not self.patched():
            self.explain_once()

    def refusal(self, environ: dict) -> ApiError | None:
        """For a stream request: on a real server without gevent, the 503 that explains; else None."""
        if "SERVER_SOFTWARE" not in environ or self.patched():
            return None
        self.explain_once()
        return ApiError(503, "gevent_required",
                        f"this server ({environ['SERVER_SOFTWARE'][:60]}) does not run gevent, which "
                        f"pricefeed's streams need: {WHAT_TO_RUN}")
