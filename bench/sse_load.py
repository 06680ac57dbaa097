"""A gevent SSE load generator: many concurrent streams from one process, parsed incrementally.

Each client is a greenlet on a raw socket; for every `event: price` it records
the price age at receipt (now − the exchange's `ts`) and the last price per pair.
Used by bench/latency.py; bounded in clients and in time, loopback only.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import re  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402

_PRICE = re.compile(rb'event: price\ndata: \{"pair":"([^"]+)","symbol":"[^"]*","price":"([^"]+)","ts":([0-9]+)')


@dataclass
class LoadResult:
    connected: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    events: int = 0
    ages_ms: list[float] = field(default_factory=list)
    last_prices: list[dict[str, str]] = field(default_factory=list)


def _loopback(host: str) -> None:
    if not host.startswith("127."):
        raise SystemExit(f"refusing to load {host}: benchmarks talk to loopback only")


def _client(url: str, result: LoadResult, prices: dict[str, str], stop_at: float, source_ip: str | None) -> None:
    parts = urlsplit(url)
    sock = socket.socket()
    try:
        if source_ip:
            sock.bind((source_ip, 0))
        sock.settimeout(10)
        sock.connect((parts.hostname, parts.port))
        path = parts.path + ("?" + parts.query if parts.query else "")
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nAccept: text/event-stream\r\n\r\n".encode())
        head = sock.recv(65536)
        if not head.startswith(b"HTTP/1.1 200"):
            result.connect_failures += 1
            return
        result.connected += 1
        buffer = head
        while time.time() < stop_at:
            sock.settimeout(max(0.05, stop_at - time.time()))
            chunk = sock.recv(262144)
            if not chunk:
                result.disconnects += 1
                return
            now_ms = time.time() * 1000
            buffer += chunk
            cut = buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            complete, buffer = buffer[:cut], buffer[cut + 2:]
            for pair, price, ts in _PRICE.findall(complete):
                result.events += 1
                result.ages_ms.append(now_ms - int(ts))
                prices[pair.decode()] = price.decode()
    except TimeoutError:
        if time.time() < stop_at:
            result.disconnects += 1
    except OSError:
        if result.connected == 0:
            result.connect_failures += 1
        else:
            result.disconnects += 1
    finally:
        sock.close()


def run_load(url: str, clients: int, duration: float, ramp_per_second: float = 500,
             source_ips: list[str] | None = None) -> LoadResult:
    """Open `clients` streams to `url` (ramped), read for `duration` seconds, then stop."""
    _loopback(urlsplit(url).hostname or "")
    result = LoadResult()
    stop_at = time.time() + duration + clients / ramp_per_second
    greenlets = []
    for number in range(clients):
        prices: dict[str, str] = {}
        result.last_prices.append(prices)
        ip = source_ips[number % len(source_ips)] if source_ips else None
        greenlets.append(gevent.spawn(_client, url, result, prices, stop_at, ip))
        gevent.sleep(1 / ramp_per_second)
    gevent.joinall(greenlets, timeout=duration + clients / ramp_per_second + 30)
    return result


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
