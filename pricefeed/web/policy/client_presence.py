"""Waiting for a turn at the admission gate while watching whether the client is still there.

A browser that gives up during its wait (a closed tab, a reload) closes its
connection. Its slot should go to whoever comes next, not be held until the wait
ends, so the wait watches the socket: readable with nothing to read is the peer's
EOF. Bytes to read (a pipelined request) are not a departure; the wait then
just sleeps out its time.
"""
from __future__ import annotations

import socket
import time

from gevent.socket import wait_read

from pricefeed.delivery.hub import Hub

# The hub's closing is checked at least this often while a socket is watched.
POLL_SECONDS = 0.25

TURN, GONE, CLOSED = "turn", "gone", "closed"


def peer_left(sock: socket.socket) -> bool:
    """The peer closed its side (or reset): a read would return EOF or fail."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def wait_for_turn(hub: Hub, seconds: float, sock: socket.socket | None) -> str:
    """Sleep `seconds`: TURN at the end (the client's turn came), GONE if the client left, CLOSED if the hub closed."""
    deadline = time.monotonic() + seconds
    watched = sock             # None once there is nothing (more) to watch
    while True:
        remaining = deadline - time.monotonic()
        if hub.closed:
            return CLOSED
        if remaining <= 0:
            return TURN
        if watched is None:
            if hub.wait_closed(remaining):
                return CLOSED
            continue
        try:
            wait_read(watched.fileno(), timeout=min(remaining, POLL_SECONDS))
        except TimeoutError:
            continue
        except OSError:
            return GONE
        if peer_left(watched):
            return GONE
        watched = None        # data, not EOF: stop watching, or we would spin on it
