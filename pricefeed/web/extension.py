"""The Flask extension object: PriceFeed(app) or PriceFeed().init_app(app)."""
from __future__ import annotations

import logging
import threading

from flask import Flask

from pricefeed.config import Config
from pricefeed.node import Node
from pricefeed.web.api import EXTENSION_KEY, create_api_blueprint
from pricefeed.web.dashboard import create_dashboard_blueprint
from pricefeed.web.sse_response import remember_start_response

log = logging.getLogger(__name__)


class PriceFeed:
    """The Flask extension. One instance per app; nothing is shared between apps."""

    def __init__(self, app: Flask | None = None):
        self.node: Node | None = None
        self.config: Config | None = None
        self._start_lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate configuration (raising ConfigError naming the variable) and register the routes."""
        self.config = Config.load(app.config)
        self.node = Node(self.config)
        app.extensions[EXTENSION_KEY] = self
        app.register_blueprint(create_api_blueprint(), url_prefix=self.config.url_prefix)
        if self.config.dashboard:
            app.register_blueprint(create_dashboard_blueprint())
        app.before_request(self._start_on_first_request)
        app.wsgi_app = remember_start_response(app.wsgi_app)

    def start(self) -> None:
        """Start this worker's feed greenlets (idempotent)."""
        assert self.node is not None, "PriceFeed.init_app() was not called"
        with self._start_lock:
            if not self.node.running:
                self.node.start()

    def stop(self, spread_s: float = 0.0, delay_s: float = 0.0) -> None:
        """Stop the feed and close all streams (graceful shutdown): after `delay_s`, over `spread_s` seconds."""
        if self.node is not None and self.node.running:
            self.node.stop(spread_s, delay_s)

    def _start_on_first_request(self) -> None:
        if self.node is not None and not self.node.running:
            try:
                self.start()
            except RuntimeError as exc:
                log.error("%s", exc)
