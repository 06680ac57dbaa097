"""One streaming client, as the flusher and the client's own greenlet share it.

The flusher writes a client's chunk in one of two ways:
- direct: one non-blocking write(2) of the chunk, already framed as an HTTP/1.1
  chunk, straight to the client's socket. This is the fast path: no greenlet
  switch, no trip through the WSGI stack. It is used only where we know how the
  server frames a response body — plain HTTP/1.1 under gunicorn's gevent worker
  (the web layer's streams/server.py direct_socket decides) — and only after the server has sent the
  response head and the first chunk itself.
- through WSGI: the chunk is handed to the client's greenlet, which yields it to
  the server like any streaming response (other servers, TLS, HTTP/1.0, tests).

If a direct write does not go through whole (the client's socket buffer is
full), the rest becomes the client's backlog and its greenlet finishes it with
an ordinary blocking write. Meanwhile the flusher skips the client; once its backlog is written
it is sent the latest price of each of its pairs.

A client is "behind" from its first partial write until the kernel's queue for it
has emptied (most of its send buffer free again), not merely until one backlog is
written: a client that reads a few bytes now and then takes each backlog just in
time and would otherwise stay connected forever, minutes behind. Past WRITE_TIMEOUT
behind, its greenlet drops it (write_backlog raises TimeoutError).

A WebSocket client is the same client with another framing (`transport`): its
chunks are WebSocket frames, always written directly (the web layer took the socket
over after the handshake), and `send_now` lets its own greenlet answer an operation
without ever interleaving bytes with a flush.
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
import time

import gevent
import gevent.event

SSE = 0          # transports: an index into each event's framings (hub.py)
WEBSOCKET = 1


class StreamClient:
    __slots__ = ("pairs", "subscription", "share", "slot", "sent_version", "steady", "ping_round", "ready",
                 "closed", "gone", "backlog", "outbox", "_sock", "fd", "_wakeup", "pace_ms", "transport",
                 "behind_since")

    def __init__(self, pairs: tuple[str, ...], subscription: int, slot: int, version: int,
                 ping_round: int, sock: socket.socket | None, pace_ms: int = 0, transport: int = SSE):
        self.transport = transport           # SSE or WEBSOCKET: which framing its chunks use
        self.subscribe(subscription, pairs)
        self.slot = slot                     # the conflated pace's flush slot
        self.pace_ms = pace_ms               # 0: every tick; else at most one update per pair per this
        self.sent_version = version          # everything of ours up to this version was written
        self.steady = False                  # kept up with every flush since sent_version
        self.ping_round = ping_round
        self.ready = False                   # the preamble is on the wire
        self.closed = False                  # the server is shutting down
        self.gone = False                    # the client went away (or was dropped)
        # The unwritten rest of a direct write: a view of the shared chunk, not a copy.
        self.backlog: memoryview | None = None
        self.outbox: bytes | None = None     # a chunk for the greenlet to yield (WSGI path)
        self._sock = sock
        # The socket the flusher writes to directly (-1: through WSGI). Public for the flusher's
        # loop, which writes inline rather than call deliver() for a client that is keeping up.
        self.fd = sock.fileno() if sock is not None else -1
        self._wakeup = gevent.event.Event()
        self.behind_since: float | None = None    # monotonic time of the partial write that began it

    def subscribe(self, subscription: int, pairs: tuple[str, ...]) -> None:
        self.subscription = subscription     # clients with the same number share chunks
        self.pairs = pairs
        # What the flusher keys the chunk of a client that kept up by, with the ping bit: one int.
        self.share = (subscription << 2) | (self.transport << 1)

    @property
    def direct(self) -> bool:
        return self.fd >= 0

    @property
    def busy(self) -> bool:
        """Still writing an earlier chunk: skip it this flush."""
        return self.backlog is not None or self.outbox is not None

    def deliver(self, framed: bytes, plain: bytes) -> bool:
        """Flusher side: write (or hand over) one chunk. False if it did not all go out now.
        The flusher's loop has the direct branch written out for clients that keep up (flusher.py,
        Flusher._write): a change to one is a change to both."""
        if self.fd < 0:
            self.outbox = plain
            self._wakeup.set()
            return True
        try:
            # gevent keeps the socket non-blocking: this never blocks the flusher.
            written = os.write(self.fd, framed)
        except BlockingIOError:
            written = 0
        except OSError:
            self.drop()
            return False
        return self.wrote(framed, written)

    def wrote(self, framed: bytes, written: int) -> bool:
        """After a direct write of `framed` that put `written` bytes out: True if it all went out
        and the client is not behind; else the rest becomes the backlog for its greenlet."""
        if written == len(framed):
            if self.behind_since is not None and self._caught_up():
                self.behind_since = None
            return True
        self.backlog = memoryview(framed)[written:]
        self._fell_behind()
        self._wakeup.set()
        return False

    def send_now(self, data: bytes) -> bool:
        """The client's own greenlet writes `data` (a WebSocket reply) without blocking: straight
        away if nothing is pending, else after what is. Never splits a flusher's chunk, because
        a partial write becomes the backlog, which makes the flusher skip this client. False if
        the peer is gone."""
        if self.gone or self.fd < 0:
            return False
        if self.busy:
            # Queued behind the backlog: the greenlet writes it next (streams/ws_transport.py). The backlog
            # itself is never touched here, since that greenlet may be writing it right now.
            self.outbox = data if self.outbox is None else self.outbox + data
            self._wakeup.set()
            return True
        try:
            written = os.write(self.fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            self.drop()
            return False
        if written < len(data):
            self.steady = False
            self.backlog = memoryview(data)[written:]
            self._fell_behind()
            self._wakeup.set()
        return True

    def write_backlog(self, sock: socket.socket, write_timeout: float | None) -> None:
        """Greenlet side: finish the backlog, within what is left of `write_timeout` since the client
        fell behind (TimeoutError past it, the client to be dropped)."""
        backlog = self.backlog
        assert backlog is not None
        if write_timeout is None:
            sock.sendall(backlog)
        else:
            left = write_timeout - (time.monotonic() - (self.behind_since or time.monotonic()))
            if left <= 0:
                raise TimeoutError(f"behind for more than {write_timeout:g} s")
            with gevent.Timeout(left, TimeoutError):
                sock.sendall(backlog)
        self.backlog = None
        if self._caught_up():
            self.behind_since = None

    def _fell_behind(self) -> None:
        if self.behind_since is None:
            self.behind_since = time.monotonic()

    def _caught_up(self) -> bool:
        """The kernel's queue for this client is down to under half its send buffer (Linux's
        TIOCOUTQ: bytes not yet acknowledged). Elsewhere: a finished backlog counts as caught up."""
        try:
            queued = struct.unpack("i", fcntl.ioctl(self.fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            size = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) if self._sock is not None else 0
        except (OSError, AttributeError):
            return True
        return queued < size // 4        # getsockopt reports twice the size set: a quarter is half

    def use_wsgi(self) -> None:
        """Write through the server after all (the web layer found it frames the body its own way)."""
        self._sock = None
        self.fd = -1

    def drop(self) -> None:
        """The peer is gone (reset, broken pipe): let the greenlet end the response."""
        self.gone = True
        self._wakeup.set()

    def close(self, farewell: bytes | None = None) -> None:
        """The server is shutting down. A greenlet stuck finishing a backlog to a client that
        stopped reading would hold the worker up to WRITE_TIMEOUT: cut that write short.

        `farewell` (plain SSE bytes, e.g. a `retry:` line) is sent first if it can go out
        without waiting: whole and at once on a direct socket, or handed to the greenlet.
        A WebSocket client gets no SSE farewell: its greenlet sends a close frame instead."""
        self.closed = True
        if farewell is not None and self.transport == SSE and not self.busy and not self.gone:
            if self.fd < 0:
                self.outbox = farewell
            else:
                # The farewell, then the last chunk: the response ends cleanly, as a browser
                # expects of a server that means to close (it reconnects after `retry:`).
                framed = b"%X\r\n%s\r\n0\r\n\r\n" % (len(farewell), farewell)
                try:
                    os.write(self.fd, framed)   # a few bytes; a full buffer loses only the hint
                except OSError:
                    pass
        if self.backlog is not None and self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._wakeup.set()

    def wait(self, timeout: float | None = None) -> None:
        """Greenlet side: block until the flusher has something for this greenlet to do (or `timeout`)."""
        self._wakeup.wait(timeout)
        self._wakeup.clear()
