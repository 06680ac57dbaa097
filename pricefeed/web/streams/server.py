"""What a stream needs to know about the server carrying it: may the flusher write to the
socket itself, and did gunicorn frame the first bytes as expected.

Direct writes are a candidate only under gunicorn's gevent worker (node.direct_writes,
set in the worker), over a plain socket (TLS must go through its own layer) and
HTTP/1.1 (chunked transfer encoding). The stream confirms it once gunicorn has sent the
preamble (framed_by_gunicorn), which also rules out the uwsgi protocol and middleware
that rewrites the body.
"""
from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable
from email.utils import formatdate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from gunicorn.http.wsgi import Response

# The server's start_response, kept in the environ by whatever sits first in front of the
# app's own WSGI callable (routes.py), so a stream can find gunicorn's Response object.
START_RESPONSE_KEY = "pricefeed.start_response"


def direct_socket(direct_writes: bool, sock: socket.socket | None, environ: dict) -> socket.socket | None:
    """The socket the flusher may write framed chunks to itself, or None (chunks go through WSGI)."""
    if sock is None or not direct_writes or environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return None
    if hasattr(sock, "getpeercert"):
        return None
    return sock


class RememberStartResponse:
    """WSGI wrapper: keeps the server's start_response in the environ (see START_RESPONSE_KEY)."""

    def __init__(self, wsgi_app: WSGIApplication):
        self.wsgi_app = wsgi_app
        self.__wrapped__ = wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[START_RESPONSE_KEY] = start_response
        return self.wsgi_app(environ, start_response)


def server_response(environ: dict) -> Response | None:
    """gunicorn's own Response object, if nothing stands between gunicorn and this app."""
    from gunicorn.http.wsgi import Response
    responder = getattr(environ.get(START_RESPONSE_KEY), "__self__", None)
    # Exactly gunicorn's HTTP/1 Response: a subclass (HTTP/2's) frames the body its own way.
    return responder if type(responder) is Response else None


def framed_by_gunicorn(responder: object | None, preamble_length: int) -> bool:
    """True if gunicorn sent the head and exactly our preamble as a chunked body: then our own
    chunks continue its stream byte for byte. Not so if a middleware or an after_request hook
    set a Content-Length, compressed or buffered the body — then the WSGI path it is."""
    return (responder is not None and getattr(responder, "chunked", False) is True
            and getattr(responder, "headers_sent", False) is True
            and getattr(responder, "sent", None) == preamble_length)


def hang_up(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# Set by StreamRoutes when nothing stands between Flask's own __call__ and it (no middleware on
# app.wsgi_app): with gunicorn's own start_response, the stream's bytes reach gunicorn unaltered.
BELOW_FLASK_KEY = "pricefeed.below_flask"
# Set in the environ of a stream the worker handed over from its accept path (handoff.py): no
# gunicorn Response; the stream may own its connection wherever it may write to it directly.
HANDED_OFF_KEY = "pricefeed.handed_off"
_date_cache: list = [0, ""]


def http_date() -> str:
    """The Date header's value, formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True)
    return _date_cache[1]


def may_own_connection(responder: object | None, environ: dict) -> bool:
    """May this stream write its own head and tell gunicorn the request was handled
    (gunicorn's ALREADY_HANDLED, which its async workers honour)? Only where it would have
    written directly anyway (direct_socket), nothing rewrites the response (gunicorn's own
    start_response, StreamRoutes first in app.wsgi_app), and gunicorn keeps no access log:
    then gunicorn's per-request response machinery — header checks, two writes, the access
    log's atoms, the last chunk — is a third of an open, for bytes the stream can write in one."""
    if responder is None or not environ.get(BELOW_FLASK_KEY):
        return False
    cfg = getattr(responder, "cfg", None)
    return cfg is not None and not getattr(cfg, "accesslog", None)


_already_handled: list = []


def already_handled() -> object:
    """gunicorn's marker for a request whose connection the app took over (imported on first use)."""
    if not _already_handled:
        from gunicorn.workers.base_async import ALREADY_HANDLED
        _already_handled.append(ALREADY_HANDLED)
    return _already_handled[0]


def own_head(status: str, headers: list[tuple[str, str]]) -> bytes | None:
    """The head of a chunked HTTP/1.1 response that ends with the connection; None if a header
    value could not be written as is (then gunicorn writes it, and checks it)."""
    lines = [f"HTTP/1.1 {status}\r\nDate: {http_date()}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"]
    for key, value in headers:
        if "\r" in value or "\n" in value:
            return None
        lines.append(f"{key}: {value}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        return None


def discard_unsent(sock: socket.socket | None) -> None:
    """A client dropped for not reading: its close resets the connection instead of leaving the
    kernel to trickle the unread (stale) bytes to it, holding the buffer for minutes."""
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


def bound_writes(sock: socket.socket | None, write_timeout: float, send_buffer: int = 0,
                 nodelay: bool = True) -> None:
    """A client that stops reading blocks only its own greenlet, and only for `write_timeout`;
    the kernel holds at most `send_buffer` (x2) bytes for it (0: the kernel's autotuning, which
    lets a client that never reads hold megabytes and go unnoticed for minutes). `nodelay`
    False turns Nagle back on for the stream (gunicorn sets TCP_NODELAY on its listener, and
    every accepted connection inherits it): see PRICEFEED_STREAM_NODELAY."""
    if sock is not None:
        sock.settimeout(write_timeout)
        try:
            if send_buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            if not nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        except OSError:
            pass       # not a TCP socket (a test double, a unix socket): nothing to set
