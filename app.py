"""The WSGI entry point: `gunicorn -c gunicorn.conf.py app:app`."""
from __future__ import annotations

import logging
import os

from flask import Flask

from pricefeed import PriceFeed


def create_app(config: dict | None = None) -> Flask:
    """A Flask app serving pricefeed. `config` overrides PRICEFEED_* environment variables."""
    logging.basicConfig(level=os.environ.get("PRICEFEED_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config.update(config or {})
    PriceFeed(app)
    return app


app = create_app()
