"""An SSE client for tests that keeps the exact bytes of every event it receives."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .waiting import wait_until


@dataclass
class Event:
    raw: bytes                 # the event block exactly as received, without the blank line
    name: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: bool = False
    received_at: float = field(default_factory=time.time)

    def json(self):
        return json.loads(self.data)

    def required_id(self) -> str:
        """The id of an event the service always sends with one (a price, a snapshot)."""
        assert self.id is not None, f"a {self.name!r} event without an id"
        return self.id


def parse_block(block: bytes) -> Event:
    event = Event(raw=block)
    lines = block.decode("utf-8").split("\n")
    if all(line.startswith(":") for line in lines):
        event.comment = True
    for line in lines:
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event.name = value
        elif name == "data":
            event.data = value if not event.data else event.data + "\n" + value
        elif name == "id":
            event.id = value
        elif name == "retry":
            event.retry = int(value)
    return event


class SSEClient:
    """Opens `url` and reads events on a background thread until closed."""

    # Longer than the service's longest silence (a `: ping` every 15 s at most), like a browser.
    def __init__(self, url: str, headers: dict | None = None, timeout: float = 30,
                 source_address: tuple[str, int] | None = None):
        parts = urlsplit(url)
        assert parts.hostname is not None, url
        # source_address: connect from another loopback address (127.0.0.2, ...), as another browser.
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout,
                                               source_address=source_address)
        self.conn.request("GET", parts.path + ("?" + parts.query if parts.query else ""), headers=headers or {})
        self._sock = self.conn.sock
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.events: list[Event] = []
        self.body = b""
        self.closed = False
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        if self.status == 200:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        else:
            self.body = self.response.read()
            self.closed = True

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    break
                buffer += chunk
                *blocks, buffer = buffer.split(b"\n\n")
                with self._lock:
                    self.events.extend(parse_block(block) for block in blocks if block)
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to inspect
            self.error = exc
        finally:
            self.closed = True

    def of(self, name: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.name == name and not e.comment]

    def comments(self) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.comment]

    def latest_prices(self) -> dict[str, str]:
        """What a browser would show: snapshot prices, then each price event, newest wins."""
        latest: dict[str, tuple[int, str]] = {}
        with self._lock:
            events = list(self.events)
        for event in events:
            if event.name == "snapshot":
                for price in event.json()["prices"]:
                    latest[price["pair"]] = (price["ts"], price["price"])
            elif event.name == "price":
                body = event.json()
                latest[body["pair"]] = (body["ts"], body["price"])
        return {pair: price for pair, (_, price) in latest.items()}

    def wait_for(self, predicate, timeout: float = 10, message: str = "events"):
        return wait_until(lambda: predicate(self), timeout, message=message)

    def close(self) -> None:
        try:
            # First unblock the reader thread: it holds the response's buffer lock while it
            # waits for data, and closing the response would wait for that lock.
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.response.close()
            self.conn.sock and self.conn.sock.close()
        except OSError:
            pass
        self.conn.close()
