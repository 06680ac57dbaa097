"""/stream's framing: Server-Sent Events in a chunked HTTP/1.1 response.

gunicorn sends the head and the preamble (retry + snapshot). From then on the flusher
writes framed chunks itself when it may (direct writes, delivery/stream_client.py); the
session's greenlet only finishes a backlog the flusher could not write without
blocking, or yields the chunks handed over when the server frames the body its own way.
"""
from __future__ import annotations

import os
import random
import socket
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import gevent

from pricefeed.delivery import sse
from pricefeed.delivery.stream_client import SSE as SSE_FRAMING
from pricefeed.delivery.stream_client import StreamClient
from pricefeed.node import Node
from pricefeed.web.streams.answers import Headers, common_headers
from pricefeed.web.streams.request import SSE
from pricefeed.web.streams.server import (
    HANDED_OFF_KEY,
    direct_socket,
    framed_by_gunicorn,
    hang_up,
    may_own_connection,
    server_response,
)
from pricefeed.web.streams.session import stream_lifetime, write_backlog

if TYPE_CHECKING:
    from gevent._types import _IoWatcher  # gevent's stubs only (type_check_only)

_HEAD = [("Content-Type", sse.CONTENT_TYPE), *sse.HEADERS.items()]


class SseTransport:
    name = SSE
    kind = SSE_FRAMING

    __slots__ = ("node", "sock", "responder", "direct_socket", "lifetime", "client", "watcher", "owned",
                 "owned_head", "took_over")

    def __init__(self, node: Node, environ: dict):
        self.node = node
        self.sock: socket.socket | None = environ.get("gunicorn.socket")
        self.lifetime = stream_lifetime(node)
        self.client: StreamClient | None = None
        self.watcher: _IoWatcher | None = None
        if environ.get(HANDED_OFF_KEY):
            # Taken from the worker's accept path (handoff.py): no gunicorn Response; the stream
            # owns its connection whenever it may write to it directly.
            self.responder = None
            self.direct_socket = direct_socket(node.direct_writes, self.sock, environ)
            self.owned = self.direct_socket is not None
        else:
            self.responder = server_response(environ)
            # Direct writes only where gunicorn itself frames the body; confirmed once the preamble is out.
            self.direct_socket = (direct_socket(node.direct_writes, self.sock, environ)
                                  if self.responder is not None else None)
            # The stream may write its own head and take the connection over (server.may_own_connection).
            self.owned = self.direct_socket is not None and may_own_connection(self.responder, environ)
        # StreamRoutes sets owned_head when the stream owns its connection.
        self.owned_head: bytes | None = None
        self.took_over = False          # wrote its own head: the server closes the connection after it

    def check_server(self) -> None:
        """Any WSGI server can carry SSE (through WSGI where it cannot be written to directly)."""

    def head(self, environ: dict) -> tuple[str, Headers]:
        return "200 OK", _HEAD + common_headers(environ, self.node.config.endpoint)

    def head_only(self, environ: dict) -> tuple[str, Headers, list[bytes]]:
        return "200 OK", _HEAD + [("Content-Length", "0")] + common_headers(environ, self.node.config.endpoint), [b""]

    def preamble(self, snapshot_json: str, event_id: str) -> bytes:
        # Jittered per connection: after a restart browsers do not all come back in the same second.
        delivery = self.node.config.delivery
        retry_ms = delivery.retry_ms + random.randint(0, delivery.retry_jitter_ms)
        return sse.retry(retry_ms) + sse.event_json("snapshot", snapshot_json, event_id)

    def start(self, client: StreamClient, preamble: bytes) -> Generator[bytes, None, bool | None]:
        """Hand the preamble to the server; True if the flusher may write to the socket directly."""
        self.client = client
        if self.owned_head is not None:
            # One write for the head and the preamble (a chunk), then the flusher's chunks follow.
            head, self.owned_head = self.owned_head, None
            self.took_over = True
            data = b"%s%X\r\n%s\r\n" % (head, len(preamble), preamble)
            try:
                # gevent keeps the socket non-blocking: one write(2), and sendall only for a rest.
                written = os.write(self.sock.fileno(), data)         # type: ignore[union-attr]
                if written < len(data):
                    self.sock.sendall(memoryview(data)[written:])    # type: ignore[union-attr]
            except BlockingIOError:
                try:
                    self.sock.sendall(data)                          # type: ignore[union-attr]
                except OSError:
                    return None
            except OSError:
                return None
            del preamble
            self._watch_departure()
            return True
        preamble_length = len(preamble)
        yield preamble
        del preamble
        if client.direct:
            # gunicorn keeps the last item as its loop variable: an empty one (it writes nothing
            # for it) lets the snapshot go while the stream is parked.
            yield b""
        if self.direct_socket is not None:
            self._watch_departure()
        return client.direct and framed_by_gunicorn(self.responder, preamble_length)

    def _watch_departure(self) -> None:
        """Notice a client that leaves when it leaves, as a bare server blocked in recv() does,
        not at the next write to it (a quiet pair's next price, or the ping 15 s later): until
        then its slot, its address's share and its memory would stay taken. One read watcher
        on the socket, called in the event loop: no greenlet, no switch."""
        watcher = gevent.get_hub().loop.io(self.sock.fileno(), 1)       # type: ignore[union-attr]
        self.watcher = watcher
        watcher.start(self._readable)

    def _readable(self) -> None:
        sock, client = self.sock, self.client
        assert sock is not None and client is not None
        timeout = sock.gettimeout()
        sock.settimeout(0.0)                # gevent's recv: raise instead of waiting (we are the loop)
        try:
            left = sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return
        except OSError:
            left = True
        finally:
            sock.settimeout(timeout)
        # Bytes, not EOF (a pipelined request): stop watching, or the loop would spin on them.
        self.stop()
        if left:
            client.drop()

    def finish_backlog(self) -> bool:
        client = self.client
        assert client is not None
        return client.backlog is None or write_backlog(self.node.hub, client, self.sock,   # type: ignore[arg-type]
                                                       self.node.config.delivery.write_timeout)

    def farewell(self) -> Iterator[bytes]:
        """The `retry:` of a spread shutdown, where the flusher handed it over (the WSGI path);
        a direct client was sent it by StreamClient.close already."""
        client = self.client
        if client is not None and client.outbox is not None:
            farewell, client.outbox = client.outbox, None
            yield farewell

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    def hang_up(self) -> None:
        if not self.took_over:
            hang_up(self.sock)      # (a stream that took its connection over is closed as it returns)
