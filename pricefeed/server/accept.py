"""The listening server the worker builds: accept in batches, and refuse a new stream at the
door while the worker sheds load.

Measured with bench/overload.py (12,000 trader clients offered to 2 workers that carry
~8,000): the load shedder refused streams, but each 503 reached its client 5 s late, and
thousands of connects timed out — the kernel's listen queue held 2,046 of its 2,048. Two
things in the stock gunicorn gevent worker make a shedding worker slow at the door:

1. With several workers it accepts one connection per turn of the event loop
   (`max_accept = 1`, so that one worker does not take a burst the others could serve).
   A worker flushing to thousands of streams turns its loop a few hundred times a second,
   between slices of a flush (delivery/flusher.py): past a few hundred new connections a
   second per worker the listen queue only grows. Here each turn accepts up to
   PRICEFEED_ACCEPT_BATCH. (Accepting one per turn only while admitting, to keep gunicorn's
   balance, was tried: the queue filled again between shedding episodes, 503s p90 3.3 s
   against 84 ms.) The admission gate (delivery/admission.py) still paces the streams let
   in, so a batch accepted at once is not a batch of snapshots at once.
2. A refusal through gunicorn's parser and Flask costs ~0.5 ms of CPU: the streams already
   open need that CPU more. While the door is closed (the app's StreamDoor: shedding, not
   draining), a new connection's request head is peeked; if the app recognises it as a plain
   request for a new stream it is consumed and answered with the app's bytes, and the
   connection closed. Anything else — another path, a head not yet complete, bytes after
   the head — takes gunicorn's normal path, untouched.

The door is chosen in `do_handle`, which runs in the accept loop, not in the connection's
greenlet: a connection accepted while the door is open is spawned straight into gunicorn's
handler, with no frame of ours on its stack for as long as it is served (a stream); the
greenlet and its socket are told to the keep-alive registry (keepalive.py).
"""
from __future__ import annotations

import socket
import time
from typing import Any, Callable, Protocol

import gevent
from gevent.server import StreamServer
from gevent.socket import wait_read

from pricefeed.server.handoff import served_by_hand_off
from pricefeed.server.keepalive import KeepAliveWaits

PEEK_BYTES = 8192       # a stream request head is a few hundred bytes; a longer one takes the normal path
HEAD_WAIT_S = 0.1       # how long a shedding worker waits for a just-accepted connection's request head


class Door(Protocol):
    """What the app tells the worker's door (pricefeed/web/stream_door.py)."""

    def closed(self) -> bool:
        """True while new streams are refused before the app (shedding load)."""

    def answer(self, head: bytes) -> bytes | None:
        """The whole response for this complete request head, or None: gunicorn's normal path."""


class AcceptServer(StreamServer):
    """gevent's StreamServer with a batch per accept turn and the door in front of the handler."""

    def __init__(self, listener: Any, handle: Callable[[Any, Any], None], pool: Any, batch: int,
                 door: Door | None = None, keepalive_waits: KeepAliveWaits | None = None,
                 hand_off: Any = None, **ssl_args: Any):
        super().__init__(listener, handle=handle, spawn=pool, **ssl_args)
        self.max_accept = max(1, batch)
        self._serve = handle
        self._door = door
        self._waits = keepalive_waits
        self._hand_off = hand_off      # the app's stream hand-off (handoff.py), or None

    def do_handle(self, client: Any, address: Any) -> None:
        door = self._door
        if door is not None and door.closed():
            greenlet = self.pool.spawn(self._at_the_door, door, client, address)
        elif self._hand_off is not None:
            greenlet = self.pool.spawn(self._handed_off_or_served, client, address)
        elif self._waits is None or self.ssl_enabled:
            super().do_handle(client, address)       # (TLS: gevent wraps the socket first)
            return
        else:
            # gunicorn's handler itself (it closes the socket when done), the greenlet kept:
            # its keep-alive waits know their socket.
            greenlet = self.pool.spawn(self._serve, client, address)
        if self._waits is not None:
            self._waits.serving(greenlet, client)

    def _handed_off_or_served(self, client: Any, address: Any) -> None:
        """A clean stream GET straight to the app's stream session (handoff.py); anything else to
        gunicorn's handler, in a greenlet of its own that takes this one's place in the pool: no
        frame of ours stays under a connection gunicorn serves (a stream it parks for hours)."""
        try:
            if served_by_hand_off(self._hand_off, client, address, _peek_head):
                client.close()
                return
        except BaseException:
            client.close()
            raise
        pool, this = self.pool, gevent.getcurrent()
        greenlet = gevent.Greenlet(self._serve, client, address)
        if pool.free_count() > 0:
            pool.start(greenlet)     # first: the pool never looks empty to a stopping worker's join
            pool.discard(this)
        else:
            pool.discard(this)       # full: this greenlet's slot for the one that serves
            pool.start(greenlet)
        if self._waits is not None:
            self._waits.serving(greenlet, client)

    def _at_the_door(self, door: Door, client: Any, address: Any) -> None:
        try:
            if answered_at_the_door(door, client):
                return
            self._serve(client, address)
        finally:
            client.close()      # as gevent's own spawn does after the handler (gunicorn closes it too)


def answered_at_the_door(door: Door, client: Any) -> bool:
    """Answer this connection here if its request head is one the door refuses; else leave it unread."""
    head = _peek_head(client)
    if head is None:
        return False
    response = door.answer(head)
    if response is None:
        return False
    try:
        client.recv(len(head))         # consume what was peeked: closing with it unread would send a reset
        client.sendall(response)
    except OSError:
        pass                           # the client left before hearing why
    return True


def _peek_head(client: Any) -> bytes | None:
    """The request head, if it has all arrived within HEAD_WAIT_S and nothing follows it; else None.

    Accepted in a batch, a connection is often taken before its browser has sent the request
    (measured: half of the refusals missed the door for that), so it gets up to HEAD_WAIT_S for
    its head — a sleeping greenlet, not CPU. Bytes after the head (a pipelined request, a body)
    would be left unread at the close, which sends a reset instead of the 503: the normal path.
    """
    deadline = time.monotonic() + HEAD_WAIT_S
    while True:
        data = _peek(client)
        if data is not None:
            if data == b"":
                return None                        # gone
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                return data if len(data) == end + 4 else None
            if len(data) >= PEEK_BYTES:
                return None                        # no head within PEEK_BYTES: not one of ours
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            if data is None:
                wait_read(client.fileno(), timeout=remaining)
            else:
                gevent.sleep(min(0.005, remaining))   # part of the head: readable already, so poll
        except (socket.timeout, OSError, ValueError):
            return None


def _peek(client: Any) -> bytes | None:
    """What has arrived, left unread; b"" if the peer closed; None if nothing has arrived yet."""
    try:
        client.settimeout(0.0)         # gevent's recv: raise instead of waiting
        return client.recv(PEEK_BYTES, socket.MSG_PEEK)
    except BlockingIOError:            # nothing yet
        return None
    except OSError:                    # the client is gone
        return b""
    finally:
        client.setblocking(True)       # what gunicorn's own handle sets next anyway
