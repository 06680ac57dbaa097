"""One stream's whole life, the same for both transports: parse, check, admit, connect,
snapshot (or resume), deliver, close.

A transport (SseTransport, WsTransport) differs only in framing: the head it answers
with, how its preamble and events are framed, how it pings and says farewell, and how
it finishes a backlog the flusher could not write at once. Everything else — the
public endpoint's rules and the order they are applied in — is here, once:

1. the server runs gevent (503 gevent_required); the query is not oversized (400);
   a cross-site page is one of PRICEFEED_ALLOWED_ORIGINS (403 origin_not_allowed);
2. the request parses (request.py: pairs, interval, Last-Event-ID; 400s), and the
   transport's own preconditions hold (the WebSocket handshake);
3. the host's `@feed.authorize` callback, if any, lets it in (401/403);
4. entry (policy/stream_entry.py): shutting down, capacity, the per-address cap,
   load shedding, the admission gate;
5. connected to the hub and snapshotted without yielding in between, so no tick
   falls in the gap; the snapshot says whether a resume had a gap;
6. delivered to until the client leaves, the worker stops (the transport's farewell)
   or the stream's lifetime ends; then disconnected and its slot released.
"""
from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Protocol

from pricefeed.delivery.farewell import farewell_retry
from pricefeed.delivery.hub import Hub, HubClosed, HubFull
from pricefeed.delivery.stream_client import StreamClient
from pricefeed.node import Node
from pricefeed.web.errors import ApiError, at_capacity, shutting_down
from pricefeed.web.policy.access import operator_allowed
from pricefeed.web.policy.origins import origin_allowed
from pricefeed.web.policy.stream_entry import hold_stream_slot, pass_the_gate
from pricefeed.web.streams.answers import Headers
from pricefeed.web.streams.request import SSE, StreamRequest, host_url, parse_stream_request
from pricefeed.web.streams.server import bound_writes, discard_unsent
from pricefeed.web.streams.snapshot import snapshot_json

# Up to 10% more, so streams opened together (after a deploy) do not all end together.
LIFETIME_JITTER = 0.1

Authorizer = Callable[[StreamRequest], object]


class Transport(Protocol):
    """What a transport supplies to the session: framing, and nothing of the lifecycle."""

    name: str                         # request.SSE or request.WEBSOCKET
    kind: int                         # the hub's framing index (stream_client.SSE / WEBSOCKET)
    sock: socket.socket | None        # the connection's socket, if the server exposes it
    direct_socket: socket.socket | None   # the socket the flusher may write to, or None
    lifetime: float | None            # seconds this stream may last, or None

    def check_server(self) -> None: ...
    def head(self, environ: dict) -> tuple[str, Headers]: ...
    def head_only(self, environ: dict) -> tuple[str, Headers, list[bytes]]: ...
    def preamble(self, snapshot_json: str, event_id: str) -> bytes: ...
    # Yields what the server writes; returns True if the flusher writes to the socket directly,
    # False if not, None if the stream could not start (the session then ends).
    def start(self, client: StreamClient, preamble: bytes) -> Generator[bytes, None, bool | None]: ...
    def finish_backlog(self) -> bool: ...
    def farewell(self) -> Iterator[bytes]: ...
    def stop(self) -> None: ...
    def hang_up(self) -> None: ...


def check_public_rules(node: Node, environ: dict) -> None:
    """Step 1's query bound and Origin check (the blueprint applies the same to /prices and /history)."""
    limit = node.config.endpoint.max_query_length
    if len(environ.get("QUERY_STRING", "")) > limit:
        raise ApiError(400, "query_too_long", f"the query string exceeds {limit} bytes")
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and not origin_allowed(origin, host_url(environ), node.config.endpoint):
        raise ApiError(403, "origin_not_allowed", "this API is not open to pages of that origin")


def authorized(authorizer: Authorizer | None, request: StreamRequest) -> None:
    """Step 3: True (or any other truthy answer) lets the stream open; 401 refuses it as
    `unauthorized` (who are you?); False, None or 403 as `forbidden` (not for you)."""
    if authorizer is None:
        return
    verdict = authorizer(request)
    if verdict is True:
        return
    if not isinstance(verdict, bool) and verdict == 401:
        raise ApiError(401, "unauthorized", "log in to open a price stream")
    if isinstance(verdict, bool) or verdict is None or verdict == 403 or not verdict:
        raise ApiError(403, "forbidden", "this price stream is not open to you")


def open_stream(node: Node, environ: dict, make_transport: Callable[[Node, dict], Transport],
                authorizer: Authorizer | None) -> tuple[str, Headers, Iterable[bytes]]:
    """Steps 1-5 for one request: (status line, headers, body iterable) for the server, or an
    ApiError to answer in JSON. The body is a StreamSession: iterating it delivers (step 6)."""
    check_public_rules(node, environ)
    transport = make_transport(node, environ)
    request = parse_stream_request(environ, node, transport.name)
    if environ.get("REQUEST_METHOD") == "HEAD":
        # Headers only, and no mailbox: a server never writes a HEAD body, so a stream opened
        # here would never notice its client leave and would hold a slot forever.
        return transport.head_only(environ)
    if (node.hub.stopping or node.hub.closed) and transport.name == SSE:
        return farewell_only(node, transport, environ)
    transport.check_server()
    authorized(authorizer, request)
    release = hold_stream_slot(node, request.address)
    try:
        pass_the_gate(node, request.address, transport.sock)
        client = node.hub.connect(request.pairs, transport.direct_socket, request.pace_ms, transport.kind)
    except HubFull:
        release()
        raise at_capacity() from None
    except HubClosed:
        release()
        raise shutting_down() from None
    except BaseException:
        release()
        raise
    try:
        delivery = node.config.delivery
        bound_writes(transport.sock, delivery.write_timeout, delivery.stream_send_buffer, delivery.stream_nodelay)
        # Registered and snapshotted without yielding in between: no tick falls in the gap.
        extra: dict = {"interval_ms": client.pace_ms}
        if request.resume_from is not None:
            extra["resume"] = node.hub.resume(request.resume_from, request.pairs)
        snapshot = snapshot_json(node, request.pairs, operator_allowed(environ, node.config.endpoint), extra)
        preamble = transport.preamble(snapshot, node.hub.last_event_id)
        status, headers = transport.head(environ)
    except BaseException:
        node.hub.disconnect(client)     # nothing may stay registered for a stream that never started
        release()
        raise
    return status, headers, StreamSession(node.hub, client, transport, preamble, release)


def farewell_only(node: Node, transport: Transport, environ: dict) -> tuple[str, Headers, Iterable[bytes]]:
    """A stopping worker's answer to a stream request that reached it anyway (sent on a kept-alive
    connection as the stop began; the idle ones were closed): what its open streams are told, a
    `retry:` and the end of the stream, so the browser comes back after it to a new worker. A 503
    would end a native EventSource for good."""
    status, headers = transport.head(environ)
    farewell = farewell_retry(node.config.restart.restart_retry_ms, node.config.restart.restart_retry_jitter_ms)()
    return status, headers, [farewell]


def stream_lifetime(node: Node) -> float | None:
    """PRICEFEED_MAX_STREAM_LIFETIME with its jitter, or None (no limit)."""
    lifetime = node.config.endpoint.max_stream_lifetime
    return lifetime * (1 + random.uniform(0, LIFETIME_JITTER)) if lifetime else None


def write_backlog(hub: Hub, client: StreamClient, sock: socket.socket, write_timeout: float | None) -> bool:
    """Finish what a direct write left, within WRITE_TIMEOUT since the client fell behind (not per
    write: a client that reads a trickle is dropped too). False: the client is gone, or stopped
    reading (counted as a slow client; its unread bytes are discarded, not trickled to it)."""
    try:
        client.write_backlog(sock, write_timeout)
    except OSError as exc:                 # includes the timeout
        if isinstance(exc, TimeoutError):
            hub.counters.slow_client_disconnects += 1
            discard_unsent(sock)
        client.drop()
        return False
    return True


class StreamSession:
    """Step 6: the response body of one open stream, which the server iterates for as long as
    the stream lasts. Little is kept: the preamble (a snapshot of every pair) is dropped once
    handed to the transport. `close()` ends it however it ends, even if never iterated."""

    __slots__ = ("hub", "client", "transport", "_preamble", "_release", "_ended", "_run")

    def __init__(self, hub: Hub, client: StreamClient, transport: Transport, preamble: bytes,
                 release: Callable[[], None]):
        self.hub, self.client, self.transport = hub, client, transport
        self._preamble: bytes | None = preamble
        self._release = release
        self._ended = False
        self._run: Generator[bytes, None, None] | None = None

    def __iter__(self) -> Iterator[bytes]:
        self._run = self._deliver()
        return self._run

    def _take_preamble(self) -> bytes:
        preamble, self._preamble = self._preamble or b"", None
        return preamble

    def _deliver(self) -> Generator[bytes, None, None]:
        hub, client, transport = self.hub, self.client, self.transport
        try:
            direct = yield from transport.start(client, self._take_preamble())
            if direct is None:
                return                 # the transport could not start (the head was rewritten)
            hub.ready(client, direct=direct)
            ends_at = time.monotonic() + transport.lifetime if transport.lifetime else None
            while True:
                client.wait(None if ends_at is None else max(0.0, ends_at - time.monotonic()))
                if ends_at is not None and time.monotonic() >= ends_at and not client.busy:
                    return             # the browser reconnects with Last-Event-ID, maybe to a newer worker
                if client.closed and not client.gone:
                    yield from transport.farewell()      # the worker is shutting down
                    return
                if client.gone:
                    return
                if not transport.finish_backlog():
                    return
                if client.outbox is not None:
                    chunk, client.outbox = client.outbox, None
                    yield chunk                          # written by the server (the WSGI path)
                hub.catch_up(client)
        finally:
            self._end()

    def close(self) -> None:
        """The server is done with the body (WSGI's close): end the stream however far it got."""
        run, self._run = self._run, None
        if run is not None:
            run.close()            # runs the generator's finally
        self._end()

    def _end(self) -> None:
        """Disconnect, give the address's slot back and hang up (idempotent)."""
        if self._ended:
            return
        self._ended = True
        self._preamble = None
        try:
            self.transport.stop()
        finally:
            self.hub.disconnect(self.client)
            self._release()
            # Without the hang-up an SSE connection would sit in keep-alive after its stream,
            # and a stopping worker could not exit for seconds.
            self.transport.hang_up()
