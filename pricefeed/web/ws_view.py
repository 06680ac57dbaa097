"""{prefix}/ws: the WebSocket transport, served by gunicorn's own gevent worker.

The same hub and flusher as /stream: a WebSocket client is a StreamClient whose
chunks are WebSocket frames (delivery/ws_frames.py). The view checks the request
like /stream (pairs, interval, lastEventId, capacity, admission) plus the
handshake and the Origin, then answers `101 Switching Protocols` through gunicorn
— a 1xx response has no body, so gunicorn sends the head and nothing else — and
takes the socket over: the flusher writes frames to it directly, this greenlet
finishes what the flusher could not write at once, and one reader greenlet per
socket handles the client's operations.

Why not gevent-websocket's worker: it is gunicorn's pywsgi worker, whose body
framing is not gunicorn's own, so every SSE stream would lose its direct writes
(pricefeed/server/worker.py). Here one worker class — pricefeed's, gunicorn's gevent worker — serves both
transports, and gevent-websocket provides the frame header codec.
"""
from __future__ import annotations

import logging
import socket
import time

import gevent
from flask import Blueprint, Response, current_app, request
from werkzeug.wsgi import ClosingIterator

from pricefeed.delivery import sse, ws_frames
from pricefeed.delivery.hub import HubClosed, HubFull
from pricefeed.delivery.stream_client import WEBSOCKET, StreamClient
from pricefeed.node import Node
from pricefeed.web.api import _last_event_id, _requested_pairs, _snapshot_body, current_node, requested_pace
from pricefeed.web.errors import ApiError, at_capacity, shutting_down
from pricefeed.web.sse_response import bound_writes, discard_unsent, hang_up, server_response
from pricefeed.web.stream_admission import admit, hold_stream_slot
from pricefeed.web.ws_operations import OperationError, parse_operation

log = logging.getLogger(__name__)


def add_websocket_routes(api: Blueprint) -> None:
    @api.route("/ws", methods=["GET"], websocket=True, provide_automatic_options=False)
    def websocket():
        return serve_websocket(current_node())

    @api.route("/ws", methods=["GET"], endpoint="websocket_required", provide_automatic_options=False)
    def websocket_required():
        raise ApiError(426, "upgrade_required", "this endpoint speaks WebSocket only (Upgrade: websocket)",
                       {"Upgrade": "websocket", "Sec-WebSocket-Version": "13"})


# -- the handshake ---------------------------------------------------------------------------------

def _handshake_key() -> str:
    if "upgrade" not in request.headers.get("Connection", "").lower():
        raise ApiError(400, "malformed_handshake", "a WebSocket handshake needs Connection: Upgrade")
    if request.headers.get("Sec-WebSocket-Version") != "13":
        raise ApiError(426, "unsupported_websocket_version", "only WebSocket version 13 is spoken here",
                       {"Sec-WebSocket-Version": "13"})
    key = request.headers.get("Sec-WebSocket-Key")
    if not ws_frames.valid_client_key(key):
        raise ApiError(400, "malformed_handshake", "Sec-WebSocket-Key must be a base64 16-byte nonce")
    return key


def serve_websocket(node: Node) -> Response:
    key = _handshake_key()   # the Origin was checked by the blueprint (api._refuse_other_sites)
    pairs = _requested_pairs(node)
    pace_ms = requested_pace(node)
    resume_from = _last_event_id()
    sock = request.environ.get("gunicorn.socket")
    responder = server_response(request.environ)
    if (responder is None or sock is None or hasattr(sock, "getpeercert")
            or not type(sock).__module__.startswith("gevent")):
        # The socket is taken over after the handshake: that needs gunicorn's gevent worker
        # with nothing rewriting its responses, and plain TCP (terminate TLS at the proxy).
        raise ApiError(501, "websocket_unavailable", "the WebSocket transport needs gunicorn's gevent worker "
                       "over plain HTTP; use /stream (SSE) here")
    release = hold_stream_slot(node)
    try:
        admit(node, release.address, sock)
        client = node.hub.connect(pairs, sock, pace_ms, WEBSOCKET)
    except HubFull:
        release()
        raise at_capacity() from None
    except HubClosed:
        release()
        raise shutting_down() from None
    except BaseException:
        release()
        raise
    bound_writes(sock, node.config.write_timeout, node.config.stream_send_buffer)
    # Registered and snapshotted without yielding in between: no tick falls in the gap.
    snapshot = _snapshot_body(node, pairs)
    snapshot["interval_ms"] = client.pace_ms
    if resume_from is not None:
        snapshot["resume"] = node.hub.resume(resume_from, pairs)
    preamble = ws_frames.event_json("snapshot", sse.encode_json(snapshot), node.hub.last_event_id)
    session = WebSocketSession(node, current_app.logger, client, sock)
    response = UpgradeResponse(session.run(responder, preamble), status=101,
                        headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                 "Sec-WebSocket-Accept": ws_frames.accept_key(key)})
    del response.headers["Content-Type"]

    def closed() -> None:
        node.hub.disconnect(client)
        release()
    response.call_on_close(closed)
    return response


class UpgradeResponse(Response):
    """A 101 whose body iterator runs the session. Werkzeug hands the server an empty body for
    any 1xx; the server must still drive this iterator (gunicorn writes the head at its first
    item and drops the bytes of a 1xx body, which is none of them: the session writes itself)."""

    def get_app_iter(self, environ):
        return ClosingIterator(self.iter_encoded(), self.close)


class IdleTimeout(Exception):
    """The client sent nothing (not even a pong) for PRICEFEED_WS_IDLE_TIMEOUT seconds."""


# After our close frame, how long we read (and drop) what the client still sends before the
# socket closes: closing with unread data makes the kernel send a reset, and a reset can
# destroy our close frame in the client's buffer before the client reads it (RFC 6455 7.1.1:
# the server closes the TCP connection once the close handshake is done).
CLOSE_LINGER_S = 1.0


def _linger(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.1)
    except OSError:
        return
    deadline = time.monotonic() + CLOSE_LINGER_S
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return          # the client closed too: the handshake is complete
        except socket.timeout:
            continue
        except OSError:
            return


class OperationRate:
    """A leaky bucket of the messages one client may send: `burst` at once, then `rate` per second."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._tokens: float = burst
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class WebSocketSession:
    """One socket after the handshake: this greenlet writes, a reader greenlet answers operations."""

    def __init__(self, node: Node, logger: logging.Logger, client: StreamClient, sock: socket.socket):
        self.node, self.hub, self.log = node, node.hub, logger
        self.client, self.sock = client, sock
        self.config = node.config

    def run(self, responder, preamble: bytes):
        hub, client = self.hub, self.client
        reader = None
        try:
            yield b""      # gunicorn writes the 101 head (and, for a 1xx, no body)
            if not (getattr(responder, "headers_sent", False) and getattr(responder, "status_code", 0) == 101):
                return     # something between gunicorn and us changed the answer: no WebSocket
            responder.force_close()       # after the session the connection is not HTTP any more
            client.send_now(preamble)
            hub.ready(client)
            reader = gevent.spawn(self._read_forever)
            self._write_forever()
        finally:
            if reader is not None:
                reader.kill(block=True, timeout=0.5)
            hub.disconnect(client)
            _linger(self.sock)
            hang_up(self.sock)

    # -- writing --------------------------------------------------------------------------------

    def _write_forever(self) -> None:
        client = self.client
        while True:
            client.wait()
            if not self._drain():
                return
            if client.closed and not client.gone:
                # The worker is shutting down: say so, so the browser reconnects elsewhere at once.
                client.send_now(ws_frames.close(ws_frames.CLOSE_GOING_AWAY, "server restarting"))
                self._drain()
                return
            if client.gone:
                return
            self.hub.catch_up(client)

    def _drain(self) -> bool:
        """Finish the backlog and queued replies (bounded by WRITE_TIMEOUT). False: the peer is gone."""
        client = self.client
        while client.backlog is not None or client.outbox is not None:
            if client.backlog is not None:
                try:
                    client.write_backlog(self.sock, self.config.write_timeout)
                except OSError as exc:   # includes the timeout: a client that stopped reading
                    if isinstance(exc, TimeoutError):
                        self.node.hub.slow_client_disconnects += 1
                        discard_unsent(self.sock)
                    client.drop()
                    return False
            if client.outbox is not None:
                # Still busy for the flusher while this greenlet writes it.
                client.backlog, client.outbox = memoryview(client.outbox), None
        return True

    def _close(self, code: int, reason: str) -> None:
        self.client.send_now(ws_frames.close(code, reason))
        self.client.drop()

    # -- reading --------------------------------------------------------------------------------

    def _read_forever(self) -> None:
        reader = ws_frames.SocketReader(self.sock)
        rate = OperationRate(self.config.ws_ops_per_second, self.config.ws_ops_burst)
        try:
            while not self.client.gone:
                with gevent.Timeout(self.config.ws_idle_timeout, IdleTimeout):
                    message = self._next_message(reader)
                if not rate.take():
                    self._close(ws_frames.CLOSE_POLICY, "too many messages")
                    return
                if not self._handle(message):
                    return
        except IdleTimeout:
            self._close(ws_frames.CLOSE_GOING_AWAY, "idle")
        except ws_frames.FrameError as exc:
            self._close(exc.code, exc.reason)
        except (ConnectionError, OSError):
            self.client.drop()
        except Exception:  # noqa: BLE001 - nothing a client sends may take the worker down
            self.log.exception("pricefeed: WebSocket reader failed")
            self._close(1011, "internal error")

    def _next_message(self, reader: ws_frames.SocketReader) -> ws_frames.Message:
        while True:
            try:
                return ws_frames.read_message(reader, self.config.ws_max_message_bytes)
            except socket.timeout:
                continue     # the socket's write timeout also bounds reads: idleness is timed above

    def _handle(self, message: ws_frames.Message) -> bool:
        """Answer one message; False when the session ends."""
        opcode = message.opcode
        if opcode == ws_frames.OP_PING:
            return self.client.send_now(ws_frames.frame(ws_frames.OP_PONG, message.payload))
        if opcode == ws_frames.OP_PONG:
            return True
        if opcode == ws_frames.OP_CLOSE:
            code = int.from_bytes(message.payload[:2], "big") if len(message.payload) >= 2 else 1000
            self._close(code if 1000 <= code < 5000 and code not in (1004, 1005, 1006, 1015) else 1000, "")
            return False
        if opcode == ws_frames.OP_BINARY:
            return self._error("unsupported_message", "operations are JSON text messages")
        try:
            text = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            self._close(ws_frames.CLOSE_INVALID_DATA, "text messages must be UTF-8")
            return False
        return self._operation(text)

    def _operation(self, text: str) -> bool:
        try:
            op, pairs = parse_operation(text, self.node.catalog)
        except OperationError as exc:
            return self._error(exc.error, exc.detail)
        if op == "ping":
            return self.client.send_now(ws_frames.event_json(
                "pong", sse.encode_json({"server_time": int(time.time() * 1000)}), None))
        return self._subscribe(pairs) if op == "subscribe" else self._unsubscribe(pairs)

    def _subscribe(self, pairs: tuple[str, ...]) -> bool:
        current = self.client.pairs
        added = tuple(pair for pair in pairs if pair not in current)
        limit = self.config.max_pairs_per_request
        if len(current) + len(added) > limit:
            return self._error("too_many_pairs", f"at most {limit} pairs per stream; "
                               f"{len(current)} subscribed, {len(added)} more asked for")
        return self._resubscribe(current + added, added)

    def _unsubscribe(self, pairs: tuple[str, ...]) -> bool:
        return self._resubscribe(tuple(pair for pair in self.client.pairs if pair not in pairs), ())

    def _resubscribe(self, pairs: tuple[str, ...], added: tuple[str, ...]) -> bool:
        hub, client = self.hub, self.client
        hub.resubscribe(client, pairs)
        # Its next flush sends the latest price of each pair it may have missed rather than the
        # journal, which could hold older prices of a pair it has just been sent the latest of.
        client.steady = False
        reply = ws_frames.event_json("subscribed", sse.encode_json({"pairs": list(client.pairs)}), None)
        return client.send_now(reply + hub.latest_frames(added, WEBSOCKET))

    def _error(self, error: str, detail: str) -> bool:
        return self.client.send_now(ws_frames.event_json(
            "error", sse.encode_json({"error": error, "detail": detail}), None))

