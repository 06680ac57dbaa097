"""Which request heads the stream hand-off takes from the worker's accept path, and the WSGI
environ it builds for them (pricefeed/web/streams/handoff.py); everything else is gunicorn's."""
from __future__ import annotations

import pytest
from gunicorn.config import Config

from pricefeed.web.streams.handoff import StreamHandOff
from pricefeed.web.streams.routes import StreamRoutes
from pricefeed.web.streams.server import HANDED_OFF_KEY
from tests.support.doubles import stand_in

PREFIX = "/api/market-data"
HEAD = (b"GET /api/market-data/stream?pairs=BTC/USD,ETH/USD HTTP/1.1\r\nHost: example.com\r\n"
        b"Accept: text/event-stream\r\nCookie: session=abc\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")


class Routes:
    """What the hand-off reads of StreamRoutes: its path and whether it still is app.wsgi_app."""

    sse_path = PREFIX + "/stream"

    def __init__(self) -> None:
        self.flask_app = type("App", (), {})()
        self.flask_app.wsgi_app = self


@pytest.fixture
def hand_off() -> StreamHandOff:
    return StreamHandOff(stand_in(StreamRoutes, Routes()), PREFIX, Config(), ("127.0.0.1", 8000))


def test_a_clean_stream_get_gets_the_environ_gunicorn_would_build(hand_off):
    environ = hand_off.environ_for(HEAD, "the socket", ("198.51.100.7", 50123))
    assert environ is not None and environ[HANDED_OFF_KEY] is True
    assert environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"] == PREFIX + "/stream"
    assert environ["QUERY_STRING"] == "pairs=BTC/USD,ETH/USD" and environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["HTTP_HOST"] == "example.com" and environ["HTTP_COOKIE"] == "session=abc"
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.9"
    assert environ["REMOTE_ADDR"] == "198.51.100.7" and environ["REMOTE_PORT"] == "50123"
    assert environ["gunicorn.socket"] == "the socket" and environ["wsgi.url_scheme"] == "http"
    assert environ["SCRIPT_NAME"] == "" and environ["wsgi.input"].read() == b""


@pytest.mark.parametrize("head", [
    HEAD.replace(b"GET", b"HEAD", 1),
    HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"),
    HEAD.replace(b"/stream?", b"/streams?"),
    HEAD.replace(b"/stream?", b"/ws?"),
    HEAD.replace(b"ETH/USD", b"ETH/USD#x"),
    HEAD.replace(b"Host: example.com\r\n", b""),
    HEAD.replace(b"Accept:", b"Content-Length: 0\r\nAccept:"),
    HEAD.replace(b"Accept:", b"Transfer-Encoding: chunked\r\nAccept:"),
    HEAD.replace(b"Accept:", b"Expect: 100-continue\r\nAccept:"),
    HEAD.replace(b"Accept:", b"Upgrade: websocket\r\nAccept:"),
    HEAD.replace(b"Accept:", b"X-Forwarded-Proto: https\r\nAccept:"),
    HEAD.replace(b"Accept:", b"X_Forwarded_For: 10.0.0.1\r\nAccept:"),
    HEAD.replace(b"Accept:", b"Cookie: b=2\r\nAccept:"),
    HEAD.replace(b"Accept:", b" folded\r\nAccept:"),
    HEAD.replace(b"text/event-stream", b"text/\x01event-stream"),
    HEAD.replace(b"pairs=", b"pairs=" + b"A" * 9000),
    HEAD.replace(b"Accept:", b"".join(b"X-H%d: 1\r\n" % i for i in range(101)) + b"Accept:"),
], ids=["HEAD", "HTTP/1.0", "another path", "the WebSocket path", "a fragment", "no Host", "a body",
        "chunked", "Expect", "Upgrade", "a secure-scheme header", "a name with _", "a repeated header",
        "a folded line", "a control character", "a request line past the limit", "too many headers"])
def test_anything_else_is_left_to_gunicorn(hand_off, head):
    assert hand_off.environ_for(head, None, ("198.51.100.7", 1)) is None


def test_nothing_is_taken_once_a_middleware_wraps_the_app(hand_off):
    hand_off.routes.flask_app.wsgi_app = object()
    assert hand_off.environ_for(HEAD, None, ("198.51.100.7", 1)) is None
