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
   stopping), a new connection's request head is peeked; if the app recognises it as a plain
   request for a new stream it is consumed and answered with the app's bytes, and the
   connection closed. Anything else — another path, a head not yet complete, bytes after
   the head — takes gunicorn's normal path, untouched.

With the pending-connection limits (pending.py, under pricefeed's app), every connection
first waits here for its first request head, peeked, within PRICEFEED_REQUEST_HEAD_TIMEOUT;
an address holding its limit of such connections has the next one closed in `do_handle`,
before any greenlet. Once the head is here the door decides (while shedding), and otherwise
the connection is handed to gunicorn's handler on a greenlet of its own in the same pool slot
(hand_over_slot): no frame of ours stays on its stack for as long as it is served (a
stream). Without those limits, the door is chosen in `do_handle`, in the accept loop, and an
open door spawns straight into gunicorn's handler. Either way the serving greenlet and its
socket are told to the keep-alive registry (keepalive.py).
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent
from gevent import Greenlet, getcurrent
from gevent.pool import Group, Pool
from gevent.server import StreamServer
from gevent.socket import wait_read

from pricefeed.server.handoff import served_by_hand_off
from pricefeed.server.keepalive import KeepAliveWaits
from pricefeed.server.pending import PendingConnections
from pricefeed.web.streams.raw_response import DoorRefusal

PEEK_BYTES = 8192       # a stream request head is a few hundred bytes; a longer one takes the normal path
HEAD_WAIT_S = 0.1       # how long a shedding worker waits for a just-accepted connection's request head


class Door(Protocol):
    """What the app tells the worker's door (pricefeed/web/streams/door.py)."""

    def closed(self) -> bool:
        """True while new streams are refused before the app (shedding load)."""

    def answer(self, head: bytes) -> DoorRefusal | None:
        """The answer to this complete request head, or None: gunicorn's normal path."""


# The worker's access-log line for a door refusal: (head, peer, refusal, seconds taken).
LogRefusal = Callable[[bytes, Any, DoorRefusal, float], None]


class AcceptServer(StreamServer):
    """gevent's StreamServer with a batch per accept turn, the pending-connection limits
    (pending.py) and the door in front of the handler."""

    pool: Pool       # always given one (gevent's StreamServer also takes none)

    def __init__(self, listener: Any, handle: Callable[[Any, Any], None], pool: Pool, batch: int,
                 door: Door | None = None, keepalive_waits: KeepAliveWaits | None = None,
                 pending: PendingConnections | None = None, log_refusal: LogRefusal | None = None,
                 hand_off: Any = None, **ssl_args: Any):
        super().__init__(listener, handle=handle, spawn=pool, **ssl_args)
        self.max_accept = max(1, batch)
        self._serve = handle
        self._door = door
        self._waits = keepalive_waits
        # Plain HTTP only: a TLS connection's first bytes are a handshake, not a head.
        self._pending = None if self.ssl_enabled else pending
        self._log_refusal = log_refusal
        self._hand_off = hand_off      # the app's stream hand-off (handoff.py), or None

    def do_handle(self, client: Any, address: Any) -> None:
        door = self._door
        pending = self._pending
        greenlet: Greenlet[..., None]
        if pending is not None:
            counted, key = pending.acquire(address)
            if not counted:
                client.close()       # at once: no greenlet, no parser, no answer to a request never made
                return
            greenlet = self.pool.spawn(self._first_head, pending, key, client, address)
        elif door is not None and door.closed():
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

    def _first_head(self, pending: PendingConnections, key: str | None, client: Any, address: Any) -> None:
        """Wait for the first request head (peeked), within the deadline; then the door; then hand
        the connection to gunicorn's handler on a greenlet of its own, so that a stream served
        for hours parks no frame of ours (this greenlet's pool slot passes to it)."""
        handed_over = False
        try:
            try:
                state, head = wait_for_head(client, pending.head_timeout)
            finally:
                pending.release(key)
            if state == TIMED_OUT:
                pending.head_timeouts += 1
            if state in (TIMED_OUT, GONE):
                return
            door = self._door
            if head is not None and door is not None and door.closed() and self._answered(door, client, head, address):
                return
            if self._hand_off is not None and served_by_hand_off(self._hand_off, client, address, _peek_head):
                return                   # a clean stream GET, served by the app's stream session
            self._to_gunicorn(client, address)
            handed_over = True
        finally:
            if not handed_over:
                client.close()

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
        self._to_gunicorn(client, address)

    def _to_gunicorn(self, client: Any, address: Any) -> None:
        """gunicorn's handler, on a greenlet of its own that takes this one's slot in the pool."""
        greenlet = hand_over_slot(self.pool, Greenlet(self._serve, client, address))
        if self._waits is not None:
            self._waits.serving(greenlet, client)

    def _at_the_door(self, door: Door, client: Any, address: Any) -> None:
        try:
            head = _peek_head(client)
            if head is not None and self._answered(door, client, head, address):
                return
            self._serve(client, address)
        finally:
            client.close()

    def _answered(self, door: Door, client: Any, head: bytes, address: Any) -> bool:
        started = time.monotonic()
        refusal = answered_at_the_door(door, client, head)
        if refusal is None:
            return False
        if self._log_refusal is not None:
            self._log_refusal(head, address, refusal, time.monotonic() - started)
        return True


def hand_over_slot(pool: Pool, greenlet: Greenlet) -> Greenlet:
    """Start `greenlet` in the calling greenlet's pool slot, and leave the pool.

    Not `pool.discard(current)` then `pool.spawn`: the pool would be empty for a moment (a
    stopping worker's `pool.join` returns then, and the process exits before the handler
    reads the request: a reset), and a full pool's spawn would wait. The new greenlet is
    tracked first, without taking the pool's semaphore (the slot held is passed on: it is
    released when the new greenlet ends); the current one is then untracked without
    releasing it. gevent's Group.add/_discard, as Pool.add and Pool.discard call them.
    """
    current = getcurrent()
    Group.add(pool, greenlet)
    if hasattr(current, "unlink"):
        current.unlink(pool._discard)  # type: ignore[attr-defined]  # gevent's private API, as above
    Group._discard(pool, current)  # type: ignore[attr-defined]  # gevent's private API, as above
    greenlet.start()
    return greenlet


def answered_at_the_door(door: Door, client: Any, head: bytes | None = None) -> DoorRefusal | None:
    """Answer this connection here if its complete request `head` (peeked now if not given) is
    one the door refuses; else leave it unread and return None."""
    if head is None:
        head = _peek_head(client)
        if head is None:
            return None
    refusal = door.answer(head)
    if refusal is None:
        return None
    try:
        client.recv(len(head))         # consume what was peeked: closing with it unread would send a reset
        client.sendall(refusal.response)
    except OSError:
        pass                           # the client left before hearing why
    return refusal


COMPLETE, LONG, GONE, TIMED_OUT = "complete", "long", "gone", "timed_out"
FIRST_PAUSE_S = 0.005    # a head split over segments: its rest usually follows within milliseconds
LONGEST_PAUSE_S = 0.2    # a head arriving a line every few seconds is peeked ~5 times a second, no more


def wait_for_head(client: Any, timeout: float) -> tuple[str, bytes | None]:
    """(state, head) of a just-accepted connection, its bytes left unread: COMPLETE with the head
    (None if bytes follow it: a body, a pipelined request — gunicorn's path), LONG (no head end in
    PEEK_BYTES: gunicorn's path and limits), GONE, or TIMED_OUT after `timeout` s (0: none).

    Nothing arrived yet: the greenlet sleeps on the socket (no CPU). Part of a head: the socket
    stays readable, so it is peeked again after a pause that doubles while nothing new arrives."""
    deadline = time.monotonic() + timeout if timeout else None
    pause, seen = FIRST_PAUSE_S, 0
    while True:
        data = _peek(client)
        if data is not None:
            if data == b"":
                return GONE, None
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                return COMPLETE, (data if len(data) == end + 4 else None)
            if len(data) >= PEEK_BYTES:
                return LONG, None
        remaining = deadline - time.monotonic() if deadline is not None else 3600.0
        if remaining <= 0:
            return TIMED_OUT, None
        try:
            if data is None:
                wait_read(client.fileno(), timeout=remaining)
            else:
                pause = FIRST_PAUSE_S if len(data) > seen else min(pause * 2, LONGEST_PAUSE_S)
                seen = len(data)
                gevent.sleep(min(pause, remaining))
        except TimeoutError:
            continue                   # the deadline: decided at the top
        except (OSError, ValueError):
            return GONE, None


def _peek_head(client: Any) -> bytes | None:
    """The request head, if it has all arrived within HEAD_WAIT_S and nothing follows it; else None.

    Accepted in a batch, a connection is often taken before its browser has sent the request
    (measured: half of the refusals missed the door for that), so it gets up to HEAD_WAIT_S for
    its head — a sleeping greenlet, not CPU. Bytes after the head (a pipelined request, a body)
    would be left unread at the close, which sends a reset instead of the 503: the normal path.
    (With the pending limits on, wait_for_head has waited for the head already.)
    """
    state, head = wait_for_head(client, HEAD_WAIT_S)
    return head if state == COMPLETE else None


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
