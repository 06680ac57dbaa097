"""The Flask extension object: PriceFeed(app) or PriceFeed().init_app(app)."""
from __future__ import annotations

import dataclasses
import logging
import threading

from flask import Flask

from pricefeed import capacity
from pricefeed.config import Config
from pricefeed.node import Node
from pricefeed.web.api import EXTENSION_KEY, create_api_blueprint
from pricefeed.web.cli import create_cli_group
from pricefeed.web.dashboard import create_dashboard_blueprint
from pricefeed.web.gevent_requirement import GeventRequirement
from pricefeed.web.metrics import NodeMetrics
from pricefeed.web.metrics_view import create_metrics_blueprint
from pricefeed.web.stream_door import StreamDoor
from pricefeed.web.streams.handoff import StreamHandOff
from pricefeed.web.streams.routes import StreamRoutes
from pricefeed.web.streams.server import remember_start_response
from pricefeed.web.streams.session import Authorizer

log = logging.getLogger(__name__)


class PriceFeed:
    """The Flask extension. One instance per app; nothing is shared between apps."""

    def __init__(self, app: Flask | None = None):
        self.node: Node | None = None
        self.config: Config | None = None         # in force: the client cap filled in (capacity.py)
        self.loaded_config: Config | None = None  # as loaded from app.config and the environment
        self.metrics: NodeMetrics | None = None
        self.door: StreamDoor | None = None      # once a pricefeed worker serves the app (served_by)
        self._start_lock = threading.Lock()
        self.gevent_check = GeventRequirement()
        self.authorizer: Authorizer | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate configuration (raising ConfigError naming the variable) and register the routes."""
        config = self.loaded_config = Config.load(app.config)
        # Until a pricefeed worker serves the app with its own (served_by): the open-files limit as found.
        in_force = capacity.derive(config.delivery, capacity.open_files_limit())
        self.config = _with_max_clients(config, in_force.max_clients)
        self.node = Node(self.config)
        self.node.capacity = in_force.as_dict()
        app.extensions[EXTENSION_KEY] = self
        endpoint = self.config.endpoint
        if self.config.observability.metrics:
            # Before the API blueprint, whose catch-all answers 404 for every other path under the prefix.
            self.metrics = NodeMetrics(self.node)
            app.register_blueprint(create_metrics_blueprint(EXTENSION_KEY), url_prefix=endpoint.url_prefix)
        app.register_blueprint(create_api_blueprint(), url_prefix=endpoint.url_prefix)
        if endpoint.dashboard:
            app.register_blueprint(create_dashboard_blueprint())
        app.before_request(self.start_on_first_request)
        wsgi_app = app.wsgi_app
        if getattr(wsgi_app, "__self__", None) is app and getattr(wsgi_app, "__func__", None) is type(app).wsgi_app:
            # Streams are opened below Flask's request machinery (streams/routes.py).
            app.wsgi_app = StreamRoutes(wsgi_app, self, app)
        else:
            # The host wrapped app.wsgi_app already: its middleware must see every stream, so
            # streams go through Flask's routes (the same session; a dearer open).
            log.info("pricefeed: app.wsgi_app was wrapped before PriceFeed: streams are served through Flask")
            app.wsgi_app = remember_start_response(wsgi_app)
        # `flask pricefeed status|simulate|serve`, as Flask-Migrate registers `flask db`.
        app.cli.add_command(create_cli_group())
        self.gevent_check.explain_if_flask_run()

    def authorize(self, callback: Authorizer) -> Authorizer:
        """Decorator: `callback(stream_request)` decides who may open a stream (/stream and /ws).

        Streams are served below Flask (no `before_request`, no `flask.request`), so a host gates
        them here. `stream_request` has `headers`, `cookies`, `address` (the per-address key),
        `client_ip` (under PRICEFEED_TRUSTED_PROXIES), `pairs`, `transport` ("sse" or "websocket")
        and `environ`. Return True to let the stream open, 401 to refuse it as `unauthorized`
        (not logged in), False or 403 as `forbidden`. It runs after the request has parsed and
        before admission, once per stream opened; it must be quick (no blocking I/O in the hub).
        """
        self.authorizer = callback
        return callback

    def served_by(self, in_force: capacity.Capacity, direct_writes: bool) -> StreamDoor:
        """Called once by pricefeed's gunicorn worker (pricefeed/server/worker.py) after it loaded
        the app and before it serves: what the worker offers, and the door it asks the app for.

        `in_force`: the worker's capacity, derived from this app's settings (capacity.py): the
        connections it serves at once, and the streams it may hold, PRICEFEED_CONNECTION_RESERVE
        below them; /health shows it under `capacity`. `direct_writes`: the worker frames responses with
        gunicorn's own chunked Response over a plain socket, so the flusher may write a stream's
        chunks to its socket itself (node.direct_writes; each stream still checks its own
        socket and framing, streams/server.py direct_socket). Returns the door the worker consults
        while shedding (stream_door.py).
        """
        assert self.node is not None and self.config is not None, "PriceFeed.init_app() was not called"
        self.config = _with_max_clients(self.config, in_force.max_clients)
        self.node.config = self.config
        self.node.hub.max_clients = in_force.max_clients
        self.node.capacity = in_force.as_dict()
        self.node.direct_writes = self.config.delivery.direct_writes and direct_writes
        self.door = StreamDoor(self.node, [self.config.endpoint.url_prefix.rstrip("/") + "/stream"])
        return self.door

    def stream_hand_off(self, wsgi: object, cfg: object, server_address: tuple) -> StreamHandOff | None:
        """Called by pricefeed's gunicorn worker for each listener it serves, where gunicorn does
        nothing per request that a stream needs (no access log, no request hooks; the worker
        decides): the app's side of taking a clean stream GET from the accept path straight to
        the stream session (streams/handoff.py), or None — every request through gunicorn."""
        routes = getattr(wsgi, "wsgi_app", None)
        if not isinstance(routes, StreamRoutes) or routes.flask_app is not wsgi or self.node is None \
                or not self.node.direct_writes:
            return None
        assert self.config is not None
        return StreamHandOff(routes, self.config.endpoint.url_prefix, cfg, server_address)

    def start(self) -> None:
        """Start this worker's feed greenlets (idempotent)."""
        assert self.node is not None, "PriceFeed.init_app() was not called"
        with self._start_lock:
            if not self.node.running:
                self.node.start()
                if self.metrics is not None:
                    self.metrics.start()

    def stop(self, spread_s: float = 0.0, delay_s: float = 0.0) -> None:
        """Stop the feed and close all streams (graceful shutdown): after `delay_s`, over `spread_s` seconds."""
        if self.metrics is not None:
            self.metrics.stop()
        if self.node is not None and self.node.running:
            self.node.stop(spread_s, delay_s)

    def start_on_first_request(self) -> None:
        if self.node is not None and not self.node.running:
            if not self.gevent_check.patched():
                self.gevent_check.explain_once()
                return
            try:
                self.start()
            except RuntimeError as exc:
                log.error("%s", exc)


def _with_max_clients(config: Config, max_clients: int) -> Config:
    """`config` with the client cap in force (the setting may be unset: derived, capacity.py)."""
    return dataclasses.replace(config, delivery=dataclasses.replace(config.delivery, max_clients=max_clients))
