"""The WSGI entry point: `gunicorn -c gunicorn.conf.py app:app`."""
from __future__ import annotations

import os

from flask import Flask

from pricefeed import PriceFeed
from pricefeed.log_format import configure as configure_logging


def create_app(config: dict | None = None) -> Flask:
    """A Flask app serving pricefeed. `config` overrides PRICEFEED_* environment variables."""
    # One line per event, key=value or JSON (PRICEFEED_LOG_FORMAT); under gunicorn.conf.py its
    # logconfig_dict already set this up and this leaves it alone.
    configure_logging(os.environ.get("PRICEFEED_LOG_FORMAT", "text").strip().lower(),
                      os.environ.get("PRICEFEED_LOG_LEVEL", "INFO"))
    app = Flask(__name__)
    app.config.update(config or {})
    PriceFeed(app)
    return app


app = create_app()
