"""/ws's framing: WebSocket frames on a socket taken over after the handshake.

The session answers `101 Switching Protocols` through gunicorn — a 1xx response has no
body, so gunicorn sends the head and nothing else — and the socket is ours from then on:
the flusher writes frames to it directly, the session's greenlet finishes what the
flusher could not write at once, and one reader greenlet per socket answers the client's
operations (subscribe, unsubscribe, ping) and its control frames.

Why not gevent-websocket's worker: it is gunicorn's pywsgi worker, whose body framing is
not gunicorn's own, so every SSE stream would lose its direct writes. One worker class —
gunicorn's gevent — serves both transports; gevent-websocket provides the frame codec.
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Generator, Iterator

import gevent

from pricefeed.delivery import sse, ws_frames
from pricefeed.delivery.stream_client import WEBSOCKET as WS_FRAMING
from pricefeed.delivery.stream_client import StreamClient
from pricefeed.node import Node
from pricefeed.web.errors import ApiError
from pricefeed.web.streams.answers import Headers, common_headers
from pricefeed.web.streams.request import WEBSOCKET
from pricefeed.web.streams.server import hang_up, server_response
from pricefeed.web.streams.session import write_backlog
from pricefeed.web.streams.ws_operations import OperationError, parse_operation

log = logging.getLogger(__name__)

# After our close frame, how long we read (and drop) what the client still sends before the
# socket closes: closing with unread data makes the kernel send a reset, and a reset can
# destroy our close frame in the client's buffer before the client reads it (RFC 6455 7.1.1:
# the server closes the TCP connection once the close handshake is done).
CLOSE_LINGER_S = 1.0


def is_websocket_request(environ: dict) -> bool:
    """What werkzeug's router calls a WebSocket request (Connection: upgrade, Upgrade: websocket);
    any other GET on /ws is Flask's 426 upgrade_required."""
    return (environ.get("HTTP_UPGRADE", "").lower() == "websocket"
            and any(v.strip() == "upgrade" for v in environ.get("HTTP_CONNECTION", "").lower().split(",")))


def handshake_key(environ: dict) -> str:
    if "upgrade" not in environ.get("HTTP_CONNECTION", "").lower():
        raise ApiError(400, "malformed_handshake", "a WebSocket handshake needs Connection: Upgrade")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
        raise ApiError(426, "unsupported_websocket_version", "only WebSocket version 13 is spoken here",
                       {"Sec-WebSocket-Version": "13"})
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY")
    if not ws_frames.valid_client_key(key):
        raise ApiError(400, "malformed_handshake", "Sec-WebSocket-Key must be a base64 16-byte nonce")
    return key   # type: ignore[return-value]


class IdleTimeout(Exception):
    """The client sent nothing (not even a pong) for PRICEFEED_WS_IDLE_TIMEOUT seconds."""


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


class WsTransport:
    name = WEBSOCKET
    kind = WS_FRAMING
    lifetime: float | None = None     # a WebSocket is not recycled: its client resubscribes in place

    def __init__(self, node: Node, environ: dict):
        self.node, self.config, self.hub = node, node.config, node.hub
        self.key = handshake_key(environ)     # the Origin was checked by the session
        self.sock: socket.socket | None = environ.get("gunicorn.socket")
        self.direct_socket = self.sock
        self.responder = server_response(environ)
        self.client: StreamClient | None = None
        self.reader: gevent.Greenlet | None = None

    def check_server(self) -> None:
        sock = self.sock
        if (self.responder is None or sock is None or hasattr(sock, "getpeercert")
                or not type(sock).__module__.startswith("gevent")):
            # The socket is taken over after the handshake: that needs gunicorn's gevent worker
            # with nothing rewriting its responses, and plain TCP (terminate TLS at the proxy).
            raise ApiError(501, "websocket_unavailable", "the WebSocket transport needs gunicorn's gevent worker "
                           "over plain HTTP; use /stream (SSE) here")

    def head(self, environ: dict) -> tuple[str, Headers]:
        return "101 SWITCHING PROTOCOLS", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", ws_frames.accept_key(self.key)), *common_headers(environ, self.config.endpoint)]

    def head_only(self, environ: dict) -> tuple[str, Headers, list[bytes]]:
        raise ApiError(405, "method_not_allowed", "a WebSocket opens with GET", {"Allow": "GET, HEAD, OPTIONS"})

    def preamble(self, snapshot_json: str, event_id: str) -> bytes:
        return ws_frames.event_json("snapshot", snapshot_json, event_id)

    def start(self, client: StreamClient, preamble: bytes) -> Generator[bytes, None, bool | None]:
        """Let gunicorn send the 101 head, then take the socket over. None: no WebSocket after all."""
        self.client = client
        yield b""      # gunicorn writes the 101 head (and, for a 1xx, no body)
        responder = self.responder
        if responder is None or not (responder.headers_sent and responder.status_code == 101):
            return None     # something between gunicorn and us changed the answer: no WebSocket
        responder.force_close()       # not HTTP any more after the session
        client.send_now(preamble)
        self.reader = gevent.spawn(self._read_forever)
        return True

    # -- writing --------------------------------------------------------------------------------

    def finish_backlog(self) -> bool:
        """Finish the backlog and queued replies (bounded by WRITE_TIMEOUT). False: the peer is gone."""
        client = self.client
        assert client is not None
        while client.backlog is not None or client.outbox is not None:
            if client.backlog is not None and not write_backlog(self.hub, client, self.sock,   # type: ignore[arg-type]
                                                                self.config.delivery.write_timeout):
                return False
            if client.outbox is not None:
                # Still busy for the flusher while this greenlet writes it.
                client.backlog, client.outbox = memoryview(client.outbox), None
        return True

    def farewell(self) -> Iterator[bytes]:
        """The worker is shutting down: say so, so the browser reconnects elsewhere at once."""
        client = self.client
        if client is not None and self.finish_backlog():
            client.send_now(ws_frames.close(ws_frames.CLOSE_GOING_AWAY, "server restarting"))
            self.finish_backlog()
        return
        yield b""     # a generator, as the session expects; a WebSocket writes its own bytes

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.kill(block=True, timeout=0.5)

    def hang_up(self) -> None:
        if self.reader is not None:      # a session that started: finish the close handshake
            self._linger()
        hang_up(self.sock)

    def _linger(self) -> None:
        sock = self.sock
        assert sock is not None
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
            except TimeoutError:
                continue
            except OSError:
                return

    def _close(self, code: int, reason: str) -> None:
        assert self.client is not None
        self.client.send_now(ws_frames.close(code, reason))
        self.client.drop()

    # -- reading --------------------------------------------------------------------------------

    def _read_forever(self) -> None:
        client = self.client
        assert client is not None and self.sock is not None
        reader = ws_frames.SocketReader(self.sock)
        rate = OperationRate(self.config.websocket.ws_ops_per_second, self.config.websocket.ws_ops_burst)
        try:
            while not client.gone:
                with gevent.Timeout(self.config.websocket.ws_idle_timeout, IdleTimeout):
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
            client.drop()
        except Exception:  # noqa: BLE001 - nothing a client sends may take the worker down
            log.exception("pricefeed: WebSocket reader failed")
            self._close(1011, "internal error")

    def _next_message(self, reader: ws_frames.SocketReader) -> ws_frames.Message:
        while True:
            try:
                return ws_frames.read_message(reader, self.config.websocket.ws_max_message_bytes)
            except TimeoutError:
                continue     # the socket's write timeout also bounds reads: idleness is timed above

    def _handle(self, message: ws_frames.Message) -> bool:
        """Answer one message; False when the session ends."""
        client = self.client
        assert client is not None
        opcode = message.opcode
        if opcode == ws_frames.OP_PING:
            return client.send_now(ws_frames.frame(ws_frames.OP_PONG, message.payload))
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
        assert self.client is not None
        try:
            op, pairs = parse_operation(text, self.node.catalog)
        except OperationError as exc:
            return self._error(exc.error, exc.detail)
        if op == "ping":
            return self.client.send_now(ws_frames.event_json(
                "pong", sse.encode_json({"server_time": int(time.time() * 1000)}), None))
        return self._subscribe(pairs) if op == "subscribe" else self._unsubscribe(pairs)

    def _subscribe(self, pairs: tuple[str, ...]) -> bool:
        assert self.client is not None
        current = self.client.pairs
        added = tuple(pair for pair in pairs if pair not in current)
        limit = self.config.endpoint.max_pairs_per_request
        if len(current) + len(added) > limit:
            return self._error("too_many_pairs", f"at most {limit} pairs per stream; "
                               f"{len(current)} subscribed, {len(added)} more asked for")
        return self._resubscribe(current + added, added)

    def _unsubscribe(self, pairs: tuple[str, ...]) -> bool:
        assert self.client is not None
        return self._resubscribe(tuple(pair for pair in self.client.pairs if pair not in pairs), ())

    def _resubscribe(self, pairs: tuple[str, ...], added: tuple[str, ...]) -> bool:
        hub, client = self.hub, self.client
        assert client is not None
        hub.resubscribe(client, pairs)
        # Its next flush sends the latest price of each pair it may have missed rather than the
        # journal, which could hold older prices of a pair it has just been sent the latest of.
        client.steady = False
        reply = ws_frames.event_json("subscribed", sse.encode_json({"pairs": list(client.pairs)}), None)
        return client.send_now(reply + hub.latest_frames(added, WS_FRAMING))

    def _error(self, error: str, detail: str) -> bool:
        assert self.client is not None
        return self.client.send_now(ws_frames.event_json(
            "error", sse.encode_json({"error": error, "detail": detail}), None))
