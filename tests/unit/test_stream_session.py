"""The stream session as a host app sees it, through Flask's test client (nothing started):
the authorize callback's answers, streams served below Flask or through it, and JSON errors
identical to the blueprint's."""
from __future__ import annotations

import json

import pytest
from flask import Flask

from pricefeed import PriceFeed

STREAM = "/api/market-data/stream"
SETTINGS = {"PRICEFEED_PAIRS": "BTC/USD,ETH/USD"}


def make_app(verdict=None, middleware_first: bool = False) -> tuple[Flask, PriceFeed]:
    app = Flask(__name__)
    app.config.update(SETTINGS)
    if middleware_first:
        inner = app.wsgi_app

        def tag_every_chunk(environ, start_response):
            for chunk in inner(environ, start_response):
                yield chunk + b": tagged\n\n" if chunk else chunk
        app.wsgi_app = tag_every_chunk  # type: ignore[method-assign]  # Flask's documented middleware hook
    feed = PriceFeed(app)
    if verdict is not None:
        feed.authorize(lambda stream: verdict(stream))
    return app, feed


def first_chunk(app: Flask, path: str = STREAM, cookie: tuple[str, str] | None = None,
                **kw) -> tuple[int, dict, bytes]:
    client = app.test_client()
    if cookie is not None:
        client.set_cookie(*cookie)
    response = client.get(path, buffered=False, **kw)
    try:
        return response.status_code, dict(response.headers), next(response.iter_encoded())
    finally:
        response.close()


@pytest.mark.parametrize("verdict, status, error", [
    (True, 200, None), ("a user object", 200, None), (401, 401, "unauthorized"),
    (False, 403, "forbidden"), (None, 403, "forbidden"), (403, 403, "forbidden")])
def test_the_authorize_callbacks_answer_decides_the_status(verdict, status, error):
    app, feed = make_app(lambda stream: verdict)
    got, headers, body = first_chunk(app)
    assert got == status
    if error is not None:
        assert json.loads(body)["error"] == error
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Vary"] == "Origin"
    assert feed.node.hub.status()["clients"] == 0
    assert feed.node.admission.streams.status()["addresses"] == 0


def test_the_callback_is_given_the_requests_cookies_headers_address_and_pairs():
    seen = []

    def allow(stream):
        seen.append(stream)
        return True
    app, _ = make_app(allow)
    first_chunk(app, STREAM + "?pairs=eth/usd", cookie=("session", "abc"), headers={"X-Team": "blue"},
                environ_base={"REMOTE_ADDR": "2001:db8::7"})
    stream = seen[0]
    assert stream.cookies["session"] == "abc" and stream.headers["x-team"] == "blue"
    assert stream.pairs == ("ETH/USD",) and stream.transport == "sse"
    assert stream.address == "2001:db8::/64" and stream.client_ip == "2001:db8::7"


def test_a_malformed_request_is_refused_before_the_callback_runs():
    calls = []

    def allow(stream):
        calls.append(stream)
        return True
    app, _ = make_app(allow)
    status, _, body = first_chunk(app, STREAM + "?interval=7")
    assert status == 400 and json.loads(body)["error"] == "malformed_interval" and not calls


def test_stream_errors_are_the_blueprints_json_byte_for_byte():
    app, _ = make_app()
    client = app.test_client()
    below_flask = client.get(STREAM + "?pairs=NOPE")
    through_flask = client.get("/api/market-data/prices?pairs=NOPE")
    assert below_flask.status_code == through_flask.status_code == 400
    assert below_flask.data == through_flask.data
    assert below_flask.headers["Content-Type"] == through_flask.headers["Content-Type"]


def test_with_the_hosts_middleware_installed_first_streams_go_through_flask_and_it():
    app, feed = make_app(lambda stream: True, middleware_first=True)
    status, headers, body = first_chunk(app)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert body.startswith(b"retry: ") and body.endswith(b": tagged\n\n")
    refused, _, _ = first_chunk(make_app(lambda stream: 401, middleware_first=True)[0])
    assert refused == 401
    assert feed.node.hub.status()["clients"] == 0
