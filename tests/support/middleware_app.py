"""An embedding app whose own WSGI middleware rewrites every body chunk (a tag after each).

pricefeed must notice that gunicorn did not send its preamble as is, and write
through WSGI (so the middleware sees every chunk) instead of straight to the socket.
"""
from __future__ import annotations

from flask import Flask

from pricefeed import PriceFeed

TAG = b": tagged by the app's middleware\n\n"


class TagEveryChunk:
    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        for chunk in self.wsgi_app(environ, start_response):
            yield chunk + TAG if chunk else chunk


app = Flask(__name__)
app.wsgi_app = TagEveryChunk(app.wsgi_app)  # type: ignore[method-assign]  # the app's own middleware, first
feed = PriceFeed(app)
