"""A WebSocket client for tests (websocket-client): keeps every server message, parsed, in order."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import websocket

from .waiting import wait_until


@dataclass
class Message:
    raw: str
    body: dict
    received_at: float = field(default_factory=time.time)

    @property
    def event(self) -> str | None:
        return self.body.get("event")

    @property
    def data(self):
        return self.body.get("data")


class WSClient:
    """Connects to `url` (ws://...) and reads messages on a background thread until closed."""

    def __init__(self, url: str, origin: str | None = None, timeout: float = 30, **options):
        self.messages: list[Message] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = False
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self.ws = websocket.create_connection(url, timeout=timeout, origin=origin,
                                              suppress_origin=origin is None, **options)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=False)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    if len(data) >= 2:
                        self.close_code = int.from_bytes(data[:2], "big")
                        self.close_reason = data[2:].decode(errors="replace")
                    break
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    text = data.decode()
                    with self._lock:
                        self.messages.append(Message(text, json.loads(text)))
        except websocket.WebSocketConnectionClosedException:
            pass
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to inspect
            self.error = exc
        finally:
            self.closed = True

    def send(self, body) -> None:
        self.ws.send(body if isinstance(body, str) else json.dumps(body))

    def of(self, event: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.event == event]

    def latest_prices(self) -> dict[str, str]:
        """What a page would show: snapshot prices, then each price event, newest wins."""
        latest: dict[str, tuple[int, str]] = {}
        with self._lock:
            messages = list(self.messages)
        for message in messages:
            if message.event == "snapshot":
                for price in message.data["prices"]:
                    latest[price["pair"]] = (price["ts"], price["price"])
            elif message.event == "price":
                latest[message.data["pair"]] = (message.data["ts"], message.data["price"])
        return {pair: price for pair, (_, price) in latest.items()}

    def wait_for(self, predicate, timeout: float = 10, message: str = "messages"):
        return wait_until(lambda: predicate(self), timeout, message=message)

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001 - already closed by the server
            pass


class RawWebSocket:
    """A WebSocket handshake and frames on a raw socket: for what websocket-client hides (the
    HTTP answer to a refused handshake, a client that never answers pings, oversized frames)."""

    def __init__(self, port: int, path: str, headers: dict | None = None, timeout: float = 10):
        import base64
        import os
        import socket
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}", "Sec-WebSocket-Version: 13"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                break
            self._buffer += data
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        self.head = head.decode("latin-1")
        self.status = int(self.head.split(" ", 2)[1]) if self.head else 0

    def body(self) -> bytes:
        """The rest of a refused handshake's answer (the JSON error)."""
        import re
        length = re.search(r"(?i)content-length: *([0-9]+)", self.head)
        while length and len(self._buffer) < int(length.group(1)):
            data = self.sock.recv(65536)
            if not data:
                break
            self._buffer += data
        return self._buffer

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self._buffer += data
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame."""
        first, second = self._read(2)
        assert not second & 0x80, "a server frame must not be masked"
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        return first & 0x0F, self._read(length)

    def read_until_close(self) -> tuple[int | None, list[tuple[int, bytes]]]:
        """Frames up to the server's close frame, and the close code (None if the TCP closed first)."""
        frames: list[tuple[int, bytes]] = []
        try:
            while True:
                opcode, payload = self.read_frame()
                if opcode == 0x8:
                    return (int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None), frames
                frames.append((opcode, payload))
        except (ConnectionError, OSError):
            return None, frames

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> None:
        import os
        header = bytes([(0x80 if fin else 0) | opcode])
        flag = 0x80 if mask else 0
        if len(payload) < 126:
            header += bytes([flag | len(payload)])
        elif len(payload) < 65536:
            header += bytes([flag | 126]) + len(payload).to_bytes(2, "big")
        else:
            header += bytes([flag | 127]) + len(payload).to_bytes(8, "big")
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            header += key
        self.sock.sendall(header + payload)

    def close(self) -> None:
        self.sock.close()
