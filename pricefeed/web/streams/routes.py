"""How a stream request reaches its session: below Flask's request machinery, or through it.

A stream is opened often (every browser after a deploy, every reconnect) and its
request needs none of what Flask builds per request: the request context, werkzeug's
routing, a Response object, the hooks. `StreamRoutes` sits in front of the app's own
WSGI callable, recognizes `GET|HEAD {prefix}/stream` and a WebSocket `GET {prefix}/ws`
by path, and runs the session on the WSGI environ; every other request goes to Flask.
The public endpoint's rules are the session's (session.py), so nothing is skipped; a
host that gated streams in its own `before_request` uses `@feed.authorize` instead.

The same routes are also declared on the blueprint: for `url_for`, for the `Allow` of
their 405s, and to serve streams when the host wrapped `app.wsgi_app` in a middleware
before PriceFeed was initialised — then StreamRoutes cannot sit inside that middleware,
and the stream goes through Flask (the same session, a dearer open).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request
from werkzeug.wsgi import ClosingIterator

from pricefeed.node import Node
from pricefeed.web.errors import ApiError
from pricefeed.web.streams.answers import Headers, error_answer
from pricefeed.web.streams.server import BELOW_FLASK_KEY, START_RESPONSE_KEY, already_handled, own_head
from pricefeed.web.streams.session import StreamSession, Transport, open_stream
from pricefeed.web.streams.sse_transport import SseTransport
from pricefeed.web.streams.ws_transport import WsTransport, is_websocket_request

if TYPE_CHECKING:
    from pricefeed.web.extension import PriceFeedState

log = logging.getLogger(__name__)

MakeTransport = Callable[[Node, dict], Transport]


def _wsgi_path(path: str) -> str:
    """PATH_INFO as a WSGI server gives it: the UTF-8 bytes, each as one latin-1 character."""
    return path.encode("utf-8").decode("latin-1")


def stream_answer(state: PriceFeedState, environ: dict,
                  make_transport: MakeTransport) -> tuple[str, Headers, Iterable[bytes]]:
    """(status, headers, body) of a stream request of the app `state` is of, or an ApiError to answer in JSON."""
    state.start_on_first_request()
    refusal = state.gevent_check.refusal(environ)
    if refusal is not None:
        raise refusal
    return open_stream(state.node, environ, make_transport, state.authorizer)


class StreamRoutes:
    """WSGI: stream routes served on the environ, everything else by `wsgi_app` (Flask's own)."""

    def __init__(self, wsgi_app, state: PriceFeedState, flask_app):
        self.flask_app = flask_app
        self.wsgi_app = wsgi_app
        self.__wrapped__ = wsgi_app
        self.state = state
        prefix = state.config.endpoint.url_prefix.rstrip("/")
        self.sse_path = _wsgi_path(prefix + "/stream")
        self.ws_path = _wsgi_path(prefix + "/ws")

    def __call__(self, environ: dict, start_response):
        path = environ.get("PATH_INFO")
        if path == self.sse_path:
            if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
                return self.serve(environ, start_response, SseTransport)
        elif path == self.ws_path and environ.get("REQUEST_METHOD") == "GET" and is_websocket_request(environ):
            return self.serve(environ, start_response, WsTransport)
        return self.wsgi_app(environ, start_response)

    def serve(self, environ: dict, start_response, make_transport: MakeTransport) -> Iterable[bytes]:
        environ[START_RESPONSE_KEY] = start_response
        if self.flask_app.wsgi_app is self:
            environ[BELOW_FLASK_KEY] = True      # no middleware of the host's between Flask and us
        endpoint = self.state.config.endpoint
        head = None
        try:
            door = self.state.door
            if door is not None:
                # The worker's door saw this connection's first request only: a later one on a
                # kept-alive connection is refused here, before it takes an address slot.
                refusal = door.refusal(environ)
                if refusal is not None:
                    raise refusal
            status, headers, body = stream_answer(self.state, environ, make_transport)
            if isinstance(body, StreamSession) and getattr(body.transport, "owned", False):
                head = own_head(status, headers)
        except ApiError as exc:
            status, headers, raw = error_answer(environ, endpoint, exc)
            body = [raw]
        except Exception:  # noqa: BLE001 - a bug answers a JSON 500, never a traceback page
            log.exception("pricefeed: unexpected error serving %s %s", environ.get("REQUEST_METHOD"),
                          environ.get("PATH_INFO", "")[:200])
            status, headers, raw = error_answer(environ, endpoint, ApiError(
                500, "internal_error", "the server failed to answer; this is a bug"))
            body = [raw]
        if head is not None:
            return self.serve_owned(body, head)      # type: ignore[arg-type]
        start_response(status, headers)
        return body

    @staticmethod
    def serve_owned(session: StreamSession, head: bytes):
        """Run the stream on this greenlet, its head written by the session, and tell gunicorn the
        request was handled (server.may_own_connection): gunicorn then only finds the
        connection closed. Nothing is yielded on this path (every write is direct); were a chunk
        yielded, it is written framed as gunicorn would."""
        transport = session.transport
        transport.owned_head = head          # type: ignore[attr-defined]
        try:
            for chunk in session:
                if chunk and transport.sock is not None:
                    transport.sock.sendall(b"%X\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass                                 # the client left mid-write: the session has ended
        finally:
            session.close()
        return already_handled()


class UpgradeResponse(Response):
    """A 101 whose body iterator runs the session. Werkzeug hands the server an empty body for
    any 1xx; the server must still drive this iterator (gunicorn writes the head at its first
    item and drops the bytes of a 1xx body, which is none of them: the session writes itself)."""

    def get_app_iter(self, environ):
        return ClosingIterator(self.iter_encoded(), self.close)


def add_stream_routes(api: Blueprint, current_state: Callable[[], PriceFeedState]) -> None:
    """/stream and /ws on the blueprint (see the module docstring for when they serve)."""

    def _answer(make_transport: MakeTransport) -> tuple[int, list, Iterable]:
        status, headers, body = stream_answer(current_state(), request.environ,
                                              make_transport)
        return int(status.split(" ", 1)[0]), headers, body

    @api.route("/stream", methods=["GET"], provide_automatic_options=False)
    def stream():
        status, headers, body = _answer(SseTransport)
        return Response(body, status=status, headers=headers, direct_passthrough=True)

    @api.route("/ws", methods=["GET"], websocket=True, provide_automatic_options=False)
    def websocket():
        status, headers, body = _answer(WsTransport)
        response = UpgradeResponse(body, status=status, headers=headers)
        response.headers.pop("Content-Type", None)
        return response

    @api.route("/ws", methods=["GET"], endpoint="websocket_required", provide_automatic_options=False)
    def websocket_required():
        raise ApiError(426, "upgrade_required", "this endpoint speaks WebSocket only (Upgrade: websocket)",
                       {"Upgrade": "websocket", "Sec-WebSocket-Version": "13"})
