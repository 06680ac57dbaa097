"""WebSocket framing (RFC 6455), beside sse.py: the same events, framed as WebSocket messages.

A server message is one unmasked text frame holding
`{"event": ..., "id": ..., "data": ...}` — `data` exactly the SSE event's data. The
frame headers (and the client frames' headers) are gevent-websocket's `Header`
codec; reading is our own so a message's size is checked against the limit from its
header, before its payload is read (gevent-websocket's WebSocket.receive reads a
frame of any announced length into memory).
"""
from __future__ import annotations

import base64
import hashlib
import socket
import struct
from dataclasses import dataclass

from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.websocket import Header

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


class FrameError(Exception):
    """The peer broke the protocol or a limit: close the socket with `code`."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def accept_key(client_key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1((client_key + GUID).encode()).digest()).decode()


def valid_client_key(client_key: str | None) -> bool:
    """A base64 nonce of 16 bytes, as RFC 6455 §4.1 requires."""
    if not client_key:
        return False
    try:
        return len(base64.b64decode(client_key, validate=True)) == 16
    except ValueError:
        return False


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (servers never mask)."""
    return bytes(Header.encode_header(True, opcode, b"", len(payload), 0)) + payload


def text(message: str) -> bytes:
    return frame(OP_TEXT, message.encode())


def event_json(name: str, data_json: str | None, event_id: str | None) -> bytes:
    """A server event, `data_json` already encoded (the hub encodes a tick's payload once for both
    transports)."""
    ident = "null" if event_id is None else f'"{event_id}"'
    data = "" if data_json is None else f',"data":{data_json}'
    return text(f'{{"event":"{name}","id":{ident}{data}}}')


def close(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])


PING = frame(OP_PING, b"")      # the keep-alive: browsers answer with a pong on their own


@dataclass(slots=True)
class Message:
    opcode: int          # OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING or OP_PONG
    payload: bytes


class SocketReader:
    """`read(n)` over a socket (what Header.decode_header reads from), and a fragmented message so far."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buffer = bytearray()
        # The message being received in fragments (read_message).
        self.fragments: list[bytes] = []
        self.fragment_opcode: int | None = None
        self.fragment_size = 0

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self._sock.recv(max(65536, size - len(self._buffer)))
            if not data:
                raise ConnectionError("the peer closed the connection")
            self._buffer += data
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def read_message(reader: SocketReader, max_size: int) -> Message:
    """The next complete client message (fragments joined; control frames returned as they come).

    Raises FrameError for a protocol violation or a message over `max_size` bytes,
    ConnectionError / OSError when the connection ends.
    """
    while True:
        try:
            header = Header.decode_header(reader)
        except ProtocolError as exc:
            raise FrameError(CLOSE_PROTOCOL_ERROR, str(exc)[:100]) from None
        except WebSocketError as exc:     # an EOF inside a header
            raise ConnectionError(str(exc)) from None
        if header.flags:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
        if not header.mask:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        if header.opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {header.opcode}")
        if header.opcode >= OP_CLOSE:
            # A control frame may come between the fragments of a message: the reader keeps them.
            return Message(header.opcode, _payload(reader, header))
        if header.opcode == OP_CONTINUATION and reader.fragment_opcode is None:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation without a message to continue")
        if header.opcode != OP_CONTINUATION and reader.fragment_opcode is not None:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "a new message inside a fragmented one")
        reader.fragment_size += header.length
        if reader.fragment_size > max_size:
            raise FrameError(CLOSE_TOO_BIG, f"messages are limited to {max_size} bytes")
        if reader.fragment_opcode is None:
            reader.fragment_opcode = header.opcode
        reader.fragments.append(_payload(reader, header))
        if header.fin:
            message = Message(reader.fragment_opcode, b"".join(reader.fragments))
            reader.fragments, reader.fragment_opcode, reader.fragment_size = [], None, 0
            return message


def _payload(reader: SocketReader, header: Header) -> bytes:
    if not header.length:
        return b""
    masked = reader.read(header.length)
    # XOR with the 4-byte mask repeated, as one big integer: no per-byte Python loop.
    mask = (header.mask * (header.length // 4 + 1))[:header.length]
    return (int.from_bytes(masked, "big") ^ int.from_bytes(mask, "big")).to_bytes(header.length, "big")
