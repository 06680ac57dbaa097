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
    def event(self) -> str:
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
