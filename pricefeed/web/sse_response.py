"""The body of one SSE response, and the checks that let the flusher write to its socket directly.

gunicorn sends the head and the preamble (retry + snapshot). From then on the flusher
writes framed chunks itself when it may (direct writes, delivery/stream_client.py); this
greenlet only finishes a backlog the flusher could not write without blocking, or yields
the chunks handed over when the server frames the body its own way.
"""
from __future__ import annotations

import socket
import struct
import time
from typing import Callable, Iterator

from pricefeed.delivery.hub import Hub
from pricefeed.delivery.stream_client import StreamClient

START_RESPONSE_KEY = "pricefeed.start_response"


def direct_socket(direct_writes: bool, sock: socket.socket | None, environ: dict) -> socket.socket | None:
    """The socket the flusher may write framed chunks to itself, or None (chunks go through WSGI).

    A candidate only under gunicorn's gevent worker (node.direct_writes, offered by the worker: PriceFeed.served_by),
    over a plain socket (TLS must go through its own layer) and HTTP/1.1 (chunked transfer
    encoding). The stream confirms it once gunicorn has sent the preamble
    (framed_by_gunicorn), which also rules out the uwsgi protocol and rewriting middleware.
    """
    if sock is None or not direct_writes or environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return None
    if hasattr(sock, "getpeercert"):
        return None
    return sock


def remember_start_response(wsgi_app):
    """WSGI wrapper (installed by PriceFeed.init_app): keeps the server's start_response in the
    environ, so a stream can check how the server framed its first bytes (framed_by_gunicorn)."""
    def app(environ, start_response):
        environ[START_RESPONSE_KEY] = start_response
        return wsgi_app(environ, start_response)
    app.__wrapped__ = wsgi_app
    return app


def server_response(environ: dict) -> object | None:
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


def stream_events(hub: Hub, client: StreamClient, preamble: bytes,
                  sock: socket.socket | None, responder: object | None = None,
                  lifetime: float | None = None,
                  on_close: Callable[[], None] | None = None) -> Iterator[bytes]:
    """The response body: the preamble, then whatever the flusher could not write itself.

    Held for as long as the stream is open, so it keeps little: the preamble (a snapshot of
    every pair) is dropped once written — under gunicorn an empty chunk after it replaces it as
    the server loop's last item (gunicorn writes nothing for it); elsewhere the next chunk does.

    With a `lifetime`, the stream ends after that many seconds: the browser reconnects
    (with Last-Event-ID, so it resumes without a gap), possibly to a newer worker.
    `on_close` runs when the stream ends however it ends (the response is passed through
    directly, so werkzeug's call_on_close would never run).
    """
    ends_at = time.monotonic() + lifetime if lifetime else None
    try:
        preamble_length = len(preamble)
        yield preamble
        del preamble
        if responder is not None:
            yield b""    # direct writes follow: the server would yield nothing else to replace it
        hub.ready(client, direct=client.direct and framed_by_gunicorn(responder, preamble_length))
        while True:
            client.wait(None if ends_at is None else max(0.0, ends_at - time.monotonic()))
            if ends_at is not None and time.monotonic() >= ends_at and not client.busy:
                hang_up(sock)
                return
            if client.closed and client.outbox is not None and not client.gone:
                farewell, client.outbox = client.outbox, None
                yield farewell     # the `retry:` of a spread shutdown (WSGI path)
            if client.gone or client.closed:
                # Gone, or the worker is shutting down. Without the hang-up the connection would
                # sit in keep-alive after the stream ends, and the worker could not exit for seconds.
                hang_up(sock)
                return
            if client.backlog is not None:
                try:
                    # Bounded by WRITE_TIMEOUT (bound_writes) since the client fell behind, not per write.
                    client.write_backlog(sock, sock.gettimeout())
                except OSError as exc:             # includes the timeout: a client that stopped reading
                    if isinstance(exc, TimeoutError):
                        hub.slow_client_disconnects += 1
                        discard_unsent(sock)
                    hang_up(sock)
                    return
                hub.catch_up(client)
            if client.outbox is not None:
                chunk, client.outbox = client.outbox, None
                yield chunk
                hub.catch_up(client)
    finally:
        hub.disconnect(client)
        if on_close is not None:
            on_close()


def hang_up(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def discard_unsent(sock: socket.socket | None) -> None:
    """A client dropped for not reading: its close resets the connection instead of leaving the
    kernel to trickle the unread (stale) bytes to it, holding the buffer for minutes."""
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


def bound_writes(sock: socket.socket | None, write_timeout: float, send_buffer: int = 0) -> None:
    """A client that stops reading blocks only its own greenlet, and only for `write_timeout`;
    the kernel holds at most `send_buffer` (×2) bytes for it (0: the kernel's autotuning, which
    lets a client that never reads hold megabytes and go unnoticed for minutes)."""
    if sock is not None:
        sock.settimeout(write_timeout)
        if send_buffer:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            except OSError:
                pass       # not a TCP socket (a test double, a unix socket): nothing to bound
