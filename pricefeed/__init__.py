"""pricefeed: real-time exchange prices streamed to browsers, as a Flask extension.

    from flask import Flask
    from pricefeed import PriceFeed

    app = Flask(__name__)
    app.config["PRICEFEED_PAIRS"] = "BTC/USD,ETH/USD"
    feed = PriceFeed(app)          # or PriceFeed() then feed.init_app(app)

Under gunicorn's gevent worker, start the feed once the worker has patched: one line in
gunicorn.conf.py, `from pricefeed.gunicorn import *`, brings the worker class and the hooks.
Without the hooks the feed starts on the first request. `flask pricefeed serve` runs an
app that way for development (`flask run` has no gevent).
"""
from __future__ import annotations

from typing import Any

__all__ = ["PriceFeed", "Config", "ConfigError"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m pricefeed.simulator` and the gunicorn master do not import
    # Flask, redis and ssl before gevent has patched.
    if name == "PriceFeed":
        from pricefeed.web.extension import PriceFeed
        return PriceFeed
    if name in ("Config", "ConfigError"):
        from . import config
        return getattr(config, name)
    raise AttributeError(f"module 'pricefeed' has no attribute {name!r}")
