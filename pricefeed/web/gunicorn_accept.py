"""The gevent worker's accept path under overload: accept in batches, and refuse a new
stream at the door while the worker sheds load.

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
   open need that CPU more. While the shedder is on, a request for a new stream is answered
   from the socket instead: the request head is peeked; if it is complete and is a plain
   same-origin `GET {prefix}/stream` (no Origin header that would need CORS headers, no body),
   it is consumed and answered with the `503 at_capacity` JSON the view would send, with its
   jittered Retry-After, and the connection closed. Anything else — another path, a head not
   yet complete, TLS, the uwsgi protocol — takes gunicorn's normal path.

Both are installed by post_worker_init (gunicorn_hooks.py), in the worker only, and only on
gunicorn's own gevent worker, whose `handle` and StreamServer they wrap.
"""
from __future__ import annotations

import socket
import time
from urllib.parse import quote
from typing import Any

import gevent
from gevent.socket import wait_read

from pricefeed.node import Node
from pricefeed.web import gunicorn_drain
from pricefeed.web.gunicorn_limits import raw_json_response

PEEK_BYTES = 8192       # a stream request head is a few hundred bytes; a longer one takes the normal path
HEAD_WAIT_S = 0.1       # how long a shedding worker waits for a just-accepted connection's request head


def accept_in_batches(batch: int) -> None:
    """Make gunicorn's gevent worker accept up to `batch` connections per loop turn (see 1. above)."""
    from gunicorn.workers import ggevent
    stock = ggevent.StreamServer
    if getattr(stock, "pricefeed_batch", None) is not None:
        stock.pricefeed_batch = batch
        return

    class BatchAcceptServer(stock):  # type: ignore[misc, valid-type]
        """gunicorn sets `max_accept = 1` after building the server and before starting it."""
        pricefeed_batch = batch

        def start(self) -> None:
            self.max_accept = max(1, self.pricefeed_batch)
            super().start()
            gunicorn_drain.track_server(self)     # so a stopping worker can stop accepting at once

    ggevent.StreamServer = BatchAcceptServer


def refuse_new_streams_at_the_door(worker: Any, node: Node, prefix: str) -> None:
    """Wrap this worker's `handle` (see 2. above)."""
    original = worker.handle
    # As a browser sends it: a prefix with other than ASCII arrives percent-encoded.
    stream_path = quote(prefix.rstrip("/") + "/stream", safe="/-._~!$&'()*+,;=:@").encode("ascii")
    # The view's other headers (security_headers.add_common_headers, the CORS Vary).
    common_headers = f"Vary: Origin\r\nReferrer-Policy: {node.config.referrer_policy}\r\n"

    def handle(listener: Any, client: Any, addr: Any) -> None:
        # A stopping worker's answer is the view's "shutting_down, reconnect now", not a long wait.
        if node.shedder.shedding and not node.hub.draining and _refused(client, node, stream_path, common_headers):
            return
        original(listener, client, addr)
    worker.handle = handle


def _refused(client: Any, node: Node, stream_path: bytes, common_headers: str) -> bool:
    head = _peek_head(client)
    if head is None or not _is_plain_stream_request(head, stream_path):
        return False
    retry_after = node.shedder.refuse()
    if retry_after is None:
        return False          # it stopped shedding just now: the view decides
    node.shedder.shed_at_door += 1
    response = raw_json_response(503, "SERVICE UNAVAILABLE", "at_capacity", node.shedder.detail(),
                                 common_headers + f"Retry-After: {retry_after}\r\n")
    try:
        client.recv(len(head))         # consume what was peeked: closing with it unread would send a reset
        client.sendall(response)
    except OSError:
        pass                           # the client left before hearing why
    finally:
        client.close()
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


def _is_plain_stream_request(head: bytes, stream_path: bytes) -> bool:
    request_line, _, headers = head.partition(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return False
    if parts[1].split(b"?", 1)[0] != stream_path:
        return False
    lowered = b"\r\n" + headers.lower()
    # Origin: the answer would need CORS headers (origins.py); a body would be left unread.
    return not any(b"\r\n" + name in lowered for name in (b"origin:", b"content-length:", b"transfer-encoding:"))


def installable(worker: Any) -> bool:
    """gunicorn's own gevent worker, plain HTTP: what both wrappers assume."""
    cfg = getattr(worker, "cfg", None)
    return (type(worker).__name__ == "GeventWorker" and cfg is not None and not getattr(cfg, "is_ssl", False)
            and getattr(cfg, "protocol", "http") != "uwsgi")
