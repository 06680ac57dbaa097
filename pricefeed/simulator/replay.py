"""Replay of a captured Binance message file, keeping the capture's timing.

Two formats (see fixtures/binance/README.md):
- cryptofeed: line 1 `<url> <-> <ts>`, then `<unix ts>: <raw frame>`;
- JSON lines `{"kind": .., "raw": ..}` (optionally `"ts"`); without receive
  times, messages are spaced `UNTIMED_SPACING` seconds apart.

The timeline starts when the first WebSocket client connects, so a test that
connects after start-up still sees the whole capture.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event

from .quotes import Quote
from .streams import MarketEvent

Publish = Callable[[Iterable[MarketEvent]], None]
UNTIMED_SPACING = 0.1
# Pause between the end of the capture and its next round with --loop.
LOOP_GAP = 1.0
_STREAM_OF_EVENT = {"24hrTicker": "ticker", "24hrMiniTicker": "miniTicker", "depthUpdate": "depth"}


class CaptureError(ValueError):
    """The replay file is not in a format the simulator understands."""


@dataclass(frozen=True)
class CapturedMessage:
    offset: float          # seconds after the capture's first message
    event: MarketEvent


def _stream_of(kind: str | None, payload: Any, where: str) -> str:
    """Stream name for a message captured without its combined envelope."""
    if kind and "@" in kind:
        return kind
    if isinstance(payload, dict) and isinstance(payload.get("s"), str) and payload.get("e"):
        event_type = payload["e"]
        if event_type == "kline" and isinstance(payload.get("k"), dict):
            suffix = f"kline_{payload['k'].get('i')}"
        else:
            suffix = _STREAM_OF_EVENT.get(event_type, str(event_type))
        return f"{payload['s'].lower()}@{suffix}"
    raise CaptureError(f"{where}: cannot tell which stream this message belongs to")


def _event_of(raw: str, kind: str | None, where: str) -> MarketEvent:
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise CaptureError(f"{where}: message is not JSON ({exc})") from exc
    if isinstance(message, dict) and isinstance(message.get("stream"), str) and "data" in message:
        return MarketEvent(message["stream"], message["data"], captured_text=raw)
    return MarketEvent(_stream_of(kind, message, where), message)


def load_capture(path: str | Path) -> list[CapturedMessage]:
    """Parse a capture file into timed events."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise CaptureError(f"{path}: empty capture")
    if lines[0].lstrip().startswith("{"):
        return _load_json_lines(lines, str(path))
    return _load_cryptofeed(lines, str(path))


def _load_cryptofeed(lines: list[str], name: str) -> list[CapturedMessage]:
    if " <-> " not in lines[0]:
        raise CaptureError(f"{name}:1: expected a '<url> <-> <ts>' header")
    messages = []
    first: float | None = None
    for number, line in enumerate(lines[1:], start=2):
        stamp, sep, raw = line.partition(": ")
        where = f"{name}:{number}"
        try:
            received = float(stamp)   # receive time in unix seconds
        except ValueError as exc:
            raise CaptureError(f"{where}: expected '<unix ts>: <message>'") from exc
        if not sep:
            raise CaptureError(f"{where}: expected '<unix ts>: <message>'")
        first = received if first is None else first
        messages.append(CapturedMessage(received - first, _event_of(raw, None, where)))
    return messages


def _load_json_lines(lines: list[str], name: str) -> list[CapturedMessage]:
    messages = []
    first: float | None = None
    for index, line in enumerate(lines):
        where = f"{name}:{index + 1}"
        try:
            record = json.loads(line)
            raw = record["raw"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CaptureError(f"{where}: expected {{\"kind\": .., \"raw\": ..}}") from exc
        stamp = record.get("ts")
        if isinstance(stamp, (int, float)):
            first = stamp if first is None else first
            offset = stamp - first
        else:
            offset = index * UNTIMED_SPACING
        messages.append(CapturedMessage(offset, _event_of(raw, record.get("kind"), where)))
    return messages


class ReplayMarket:
    """Publishes a capture's messages on the capture's clock, scaled by `speed`."""

    def __init__(self, messages: list[CapturedMessage], speed: float, loop: bool,
                 publish: Publish) -> None:
        self._messages = messages
        self._speed = speed
        self._loop = loop
        self._publish = publish
        self._started = Event()
        self._resumed = Event()
        self._resumed.set()
        self._sent = 0
        self._rounds = 0
        self._finished = False

    def opening_quotes(self) -> list[Quote]:
        """Each traded symbol opens at its first captured trade and book."""
        prices: dict[str, str] = {}
        books: dict[str, dict[str, Any]] = {}
        for message in self._messages:
            payload, symbol = message.event.payload, message.event.symbol
            if symbol is None:
                continue
            if payload.get("e") in ("aggTrade", "trade") and isinstance(payload.get("p"), str):
                prices.setdefault(symbol, payload["p"])
            elif "e" not in payload and "b" in payload and "a" in payload:
                books.setdefault(symbol, payload)
        return [Quote(symbol, price, books.get(symbol, {}).get("b"), books.get(symbol, {}).get("B"),
                      books.get(symbol, {}).get("a"), books.get(symbol, {}).get("A"))
                for symbol, price in prices.items()]

    def client_connected(self) -> None:
        self._started.set()

    def control(self, paused: bool | None, rate: float | None) -> dict[str, Any]:
        if rate is not None:
            raise ValueError("rate applies to the random walk; a replay runs at --speed")
        if paused is True:
            self._resumed.clear()
        elif paused is False:
            self._resumed.set()
        return {"source": "replay", "paused": not self._resumed.is_set(),
                "started": self._started.is_set(), "finished": self._finished,
                "sent": self._sent, "total": len(self._messages), "rounds": self._rounds,
                "speed": self._speed, "loop": self._loop}

    def run(self) -> None:
        self._started.wait()
        while True:
            self._play_once()
            self._rounds += 1
            if not self._loop:
                self._finished = True
                return
            if self._speed > 0:
                gevent.sleep(LOOP_GAP / self._speed)

    def _play_once(self) -> None:
        origin = time.monotonic()
        for index, message in enumerate(self._messages):
            if self._speed > 0:
                while True:
                    if not self._resumed.is_set():
                        paused_at = time.monotonic()
                        self._resumed.wait()
                        origin += time.monotonic() - paused_at   # the pause does not count
                    delay = origin + message.offset / self._speed - time.monotonic()
                    if delay <= 0:
                        break
                    gevent.sleep(min(delay, 0.25))
            else:
                self._resumed.wait()
                if index % 50 == 0:
                    gevent.sleep(0)   # as fast as possible, but let clients be served
            self._publish([message.event])
            self._sent += 1
