"""The Flask extension: `PriceFeed(app)` or `PriceFeed().init_app(app)`.

As Flask's extensions do, the instance holds only what the host configured on it (the
`@feed.authorize` callback); everything an app runs — its config, node, metrics, door —
is that app's `PriceFeedState`, kept in `app.extensions["pricefeed"]`. One instance may
serve several apps, each with its own node; an app takes one registration only.
`feed.node`, `feed.config`, … are the current app's (or, outside an app context, those of
the only app the instance was registered on); `feed.state(app)` names the app.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import weakref

from flask import Flask, current_app, has_app_context

from pricefeed import capacity
from pricefeed.config import Config
from pricefeed.node import Node
from pricefeed.web import EXTENSION_KEY
from pricefeed.web.cli.commands import create_cli_group
from pricefeed.web.http.api import create_api_blueprint
from pricefeed.web.http.dashboard import create_dashboard_blueprint
from pricefeed.web.metrics.series import NodeMetrics
from pricefeed.web.metrics.view import create_metrics_blueprint
from pricefeed.web.streams.door import StreamDoor
from pricefeed.web.streams.gevent_requirement import GeventRequirement
from pricefeed.web.streams.handoff import StreamHandOff
from pricefeed.web.streams.routes import StreamRoutes
from pricefeed.web.streams.server import RememberStartResponse
from pricefeed.web.streams.session import Authorizer

log = logging.getLogger(__name__)


class PriceFeed:
    """The Flask extension. Its state is per app (PriceFeedState); see the module docstring."""

    def __init__(self, app: Flask | None = None):
        self.authorizer: Authorizer | None = None
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate configuration (raising ConfigError naming the variable) and register the routes."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"A 'pricefeed' extension is already registered on this app ({app.name!r}). Call init_app "
                "once per app; to serve another app, create it and call init_app on that one.")
        state = PriceFeedState(self, app)
        app.extensions[EXTENSION_KEY] = state
        self._apps.add(app)
        config = state.config
        if config.observability.metrics:
            # Before the API blueprint, whose catch-all answers 404 for every other path under the prefix.
            app.register_blueprint(create_metrics_blueprint(), url_prefix=config.endpoint.url_prefix)
        api = create_api_blueprint()
        if config.endpoint.fault_injection:
            from pricefeed.web.testing import add_fault_routes  # test-only code loads only then
            add_fault_routes(api)
        app.register_blueprint(api, url_prefix=config.endpoint.url_prefix)
        if config.endpoint.dashboard:
            app.register_blueprint(create_dashboard_blueprint())
        app.before_request(state.start_on_first_request)
        wsgi_app = app.wsgi_app
        if getattr(wsgi_app, "__self__", None) is app and getattr(wsgi_app, "__func__", None) is type(app).wsgi_app:
            # Streams are opened below Flask's request machinery (streams/routes.py).
            app.wsgi_app = StreamRoutes(wsgi_app, state, app)
        else:
            # The host wrapped app.wsgi_app already: its middleware must see every stream, so
            # streams go through Flask's routes (the same session; a dearer open).
            log.info("pricefeed: app.wsgi_app was wrapped before PriceFeed: streams are served through Flask")
            kept = RememberStartResponse(wsgi_app)
            app.wsgi_app = kept  # type: ignore[method-assign]  # a method in Flask's types; its docs wrap it
        # `flask pricefeed status|simulate|serve`, as Flask-Migrate registers `flask db`.
        app.cli.add_command(create_cli_group())
        state.gevent_check.explain_if_flask_run()

    def authorize(self, callback: Authorizer) -> Authorizer:
        """Decorator: `callback(stream_request)` decides who may open a stream (/stream and /ws).

        Streams are served below Flask (no `before_request`, no `flask.request`), so a host gates
        them here. `stream_request` has `headers`, `cookies`, `address` (the per-address key),
        `client_ip` (under PRICEFEED_TRUSTED_PROXIES), `pairs`, `transport` ("sse" or "websocket")
        and `environ`. Return True to let the stream open, 401 to refuse it as `unauthorized`
        (not logged in), False or 403 as `forbidden`. It runs after the request has parsed and
        before admission, once per stream opened; it must be quick (no blocking I/O in the hub).
        The same callback gates every app this instance serves.
        """
        self.authorizer = callback
        return callback

    def state(self, app: Flask | None = None) -> PriceFeedState:
        """`app`'s state; without `app`, the current app's, or outside an app context that of the
        only app this instance was registered on."""
        if app is None:
            app = self._app_in_scope()
        state = app.extensions.get(EXTENSION_KEY)
        if not isinstance(state, PriceFeedState) or state.extension is not self:
            raise RuntimeError(f"this PriceFeed is not registered on the app {app.name!r}: call init_app(app) first")
        return state

    def _app_in_scope(self) -> Flask:
        if has_app_context():
            return current_app._get_current_object()  # type: ignore[attr-defined]
        apps = list(self._apps)
        if len(apps) == 1:
            return apps[0]
        if not apps:
            raise RuntimeError("PriceFeed.init_app(app) was not called")
        raise RuntimeError(f"this PriceFeed serves {len(apps)} apps and no app context is active: use "
                           "feed.state(app), or work inside `with app.app_context():`")

    @property
    def node(self) -> Node:
        return self.state().node

    @property
    def config(self) -> Config:
        return self.state().config

    @property
    def metrics(self) -> NodeMetrics | None:
        return self.state().metrics

    @property
    def door(self) -> StreamDoor | None:
        return self.state().door

    def start(self, app: Flask | None = None) -> None:
        """Start the app's feed greenlets in this worker (idempotent)."""
        self.state(app).start()

    def stop(self, spread_s: float = 0.0, delay_s: float = 0.0, app: Flask | None = None) -> None:
        """Stop the app's feed and close all its streams: after `delay_s`, over `spread_s` seconds."""
        self.state(app).stop(spread_s, delay_s)


class PriceFeedState:
    """What one app runs: its configuration, node, metrics and (under pricefeed's gunicorn worker)
    door. `app.extensions["pricefeed"]`, where pricefeed's gunicorn worker (pricefeed/server/worker.py)
    finds it and calls `served_by`, `stream_hand_off`, `start` and `stop`."""

    def __init__(self, extension: PriceFeed, app: Flask):
        self.extension = extension
        self.loaded_config = Config.load(app.config)     # as loaded from app.config and the environment
        # Until a pricefeed worker serves the app with its own (served_by): the open-files limit as found.
        in_force = capacity.derive(self.loaded_config.delivery, capacity.open_files_limit())
        self.config: Config = _with_max_clients(self.loaded_config, in_force.max_clients)    # in force
        # What the node asks of the app when it needs it (Node's `capacity`, `direct_writes`):
        # both change once pricefeed's gunicorn worker serves the app (served_by).
        self._in_force: dict = in_force.as_dict()
        self._direct_writes = False
        self.node = Node(self.config, capacity=lambda: self._in_force, direct_writes=lambda: self._direct_writes)
        # The worker's limits on connections without a request yet (served_by), for /metrics.
        self.pending_connections: object | None = None
        self.metrics: NodeMetrics | None = (NodeMetrics(self.node, lambda: self.pending_connections)
                                            if self.config.observability.metrics else None)
        self.door: StreamDoor | None = None      # once a pricefeed worker serves the app (served_by)
        self.gevent_check = GeventRequirement()
        self._start_lock = threading.Lock()

    @property
    def authorizer(self) -> Authorizer | None:
        """The host's `@feed.authorize` callback, read from the extension as each stream opens."""
        return self.extension.authorizer

    def served_by(self, in_force: capacity.Capacity, direct_writes: bool,
                  pending_connections: object | None = None) -> StreamDoor:
        """Called once by pricefeed's gunicorn worker (pricefeed/server/worker.py) after it loaded
        the app and before it serves: what the worker offers, and the door it asks the app for.

        `in_force`: the worker's capacity, derived from this app's settings (capacity.py): the
        connections it serves at once, and the streams it may hold, PRICEFEED_CONNECTION_RESERVE
        below them; /health shows it under `capacity`. `direct_writes`: the worker frames responses with
        gunicorn's own chunked Response over a plain socket, so the flusher may write a stream's
        chunks to its socket itself (node.direct_writes; each stream still checks its own
        socket and framing, streams/server.py direct_socket). Returns the door the worker consults
        while shedding (streams/door.py).
        """
        self.config = _with_max_clients(self.config, in_force.max_clients)
        self._in_force = in_force.as_dict()
        self._direct_writes = self.config.delivery.direct_writes and direct_writes
        self.pending_connections = pending_connections
        self.door = StreamDoor(self.node, [self.config.endpoint.url_prefix.rstrip("/") + "/stream"])
        return self.door

    def stream_hand_off(self, wsgi: object, cfg: object, server_address: tuple) -> StreamHandOff | None:
        """Called by pricefeed's gunicorn worker for each listener it serves, where gunicorn does
        nothing per request that a stream needs (no access log, no request hooks; the worker
        decides): the app's side of taking a clean stream GET from the accept path straight to
        the stream session (streams/handoff.py), or None — every request through gunicorn."""
        routes = getattr(wsgi, "wsgi_app", None)
        if not isinstance(routes, StreamRoutes) or routes.flask_app is not wsgi or not self.node.direct_writes:
            return None
        return StreamHandOff(routes, self.config.endpoint.url_prefix, cfg, server_address)

    def start(self) -> None:
        """Start this worker's feed greenlets (idempotent)."""
        with self._start_lock:
            if not self.node.running:
                self.node.start()
                if self.metrics is not None:
                    self.metrics.start()

    def stop(self, spread_s: float = 0.0, delay_s: float = 0.0) -> None:
        """Stop the feed and close all streams (graceful shutdown): after `delay_s`, over `spread_s` seconds."""
        if self.metrics is not None:
            self.metrics.stop()
        if self.node.running:
            self.node.stop(spread_s, delay_s)

    def start_on_first_request(self) -> None:
        if not self.node.running:
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
