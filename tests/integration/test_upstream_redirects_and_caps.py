"""No redirect is followed on the exchange's WebSocket handshake or REST; the REST body is capped.

Real loopback HTTP servers: one that redirects, one that counts whether anyone was sent to it.
"""
from __future__ import annotations

import http.server
import json
import threading
from contextlib import contextmanager

import pytest
import websocket

from pricefeed.exchange.backoff import ReconnectPolicy
from pricefeed.exchange.feed import BinanceFeed
from pricefeed.exchange.rest import RestPoller
from pricefeed.pairs import PairCatalog
from pricefeed.ticks import PriceTick


@contextmanager
def http_server(answer):
    """A loopback server answering every GET with `answer(handler)`; yields (base url, request paths)."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.path)
            answer(self)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def redirect_to(location: str):
    def answer(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def test_the_websocket_handshake_follows_no_redirect():
    with http_server(lambda h: h.send_error(404)) as (target, target_seen):
        with http_server(redirect_to(f"ws://{target}/stream")) as (origin, origin_seen):
            feed = BinanceFeed(f"ws://{origin}", PairCatalog(["BTC/USD"]), lambda tick: None,
                               policy=ReconnectPolicy(0.1, 1, 10))
            with pytest.raises(websocket.WebSocketException):
                feed._connect()
            assert len(origin_seen) == 1 and target_seen == []


def test_rest_polling_follows_no_redirect():
    with http_server(lambda h: h.send_error(404)) as (target, target_seen):
        with http_server(redirect_to(f"http://{target}/api/v3/ticker/24hr")) as (origin, origin_seen):
            poller = RestPoller(f"http://{origin}", PairCatalog(["BTC/USD"]), lambda tick: None)
            assert poller.poll_once() == 0
            assert len(origin_seen) == 1 and target_seen == []
            assert poller.last_error.startswith("HTTP 302")


def test_a_rest_body_over_the_cap_is_malformed_and_publishes_nothing():
    rows = [{"symbol": "BTCUSDT", "lastPrice": "43000.1", "closeTime": 1700000000000}] * 30_000   # ~2 MB

    def answer(handler):
        body = json.dumps(rows).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    published: list[PriceTick] = []
    with http_server(answer) as (origin, _):
        poller = RestPoller(f"http://{origin}", PairCatalog(["BTC/USD"]), published.append, max_body_bytes=65536)
        assert poller.poll_once() == 0
        assert published == [] and poller.malformed == 1
