"""The fan-out benchmark's load generator: one process holding thousands of SSE or WebSocket streams.

    python -m bench.fanout_client '<spec as JSON>'     (bench/fanout.py starts these)

One greenlet per client. Clients connect from the spec's source addresses in
turn (IP_BIND_ADDRESS_NO_PORT: each source address gets the whole ephemeral port
range per destination), on a common schedule shared by every generator process,
parse events incrementally, and keep the last price of each pair. Prints one JSON
object with its totals: connects, failures and their reasons, disconnects, events,
a 1 ms histogram of price ages (now − `ts`) from the clients in the age sample,
each client's final prices, and its own CPU seconds in the measured window — in total and
per client group (a mixed scenario's traders and widgets).

WebSocket clients (spec "transport": "ws") are as cheap: a raw socket doing the
handshake, reading frames without decoding them one by one (each server message is
one JSON object ending in `}}`; a price's data holds no nested object) and answering
the server's pings with a masked empty pong, as a browser does.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import errno  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from collections import Counter  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402

from bench.fanout_scenarios import SCENARIOS, client_group, client_pairs, stream_path  # noqa: E402

BATCH_READ_S = 0.25                  # how often a client outside the age sample reads
AGE_CAP_MS = 60_000                  # ages above this share the top bucket (the max is kept exactly)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

# pricefeed writes "event: price\ndata: {...}", Flask-SSE "event:price\ndata:{...}"; both
# carry the keys in this order (the bridge builds Flask-SSE's payload like pricefeed's).
_PRICE = re.compile(rb'event: ?price\ndata: ?\{"pair":"([^"]+)","symbol":"[^"]*","price":"([^"]+)","ts":([0-9]+)')
_SNAPSHOT = re.compile(rb"event: snapshot\ndata: ([^\n]*)")
_SNAPSHOT_PRICE = re.compile(rb'\{"pair":"([^"]+)","symbol":"[^"]*","price":"([^"]+)"')
_PRICE_AFTER_PAIR = re.compile(rb',"symbol":"[^"]*","price":"([^"]+)"')
# pricefeed's WebSocket messages: {"event":"price","id":"..","data":{"pair":..,"symbol":..,"price":..,"ts":..
_WS_PRICE = re.compile(rb'"event":"price","id":"[^"]*","data":\{"pair":"([^"]+)","symbol":"[^"]*",'
                       rb'"price":"([^"]+)","ts":([0-9]+)')
_WS_SNAPSHOT = re.compile(rb'"event":"snapshot".*?"prices":\[(.*?)\],"mode"', re.DOTALL)
_WS_PING = b"\x89\x00"                 # the server's keep-alive: an empty ping frame
_WS_PONG = b"\x8a\x80\x00\x00\x00\x00"  # a client's answer: an empty pong, masked (with a zero key)
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def raise_open_files_limit() -> int:
    """Raise this process's open-files limit to its hard limit (children inherit it); return it.
    Each stream holds one file; a limit of 1,024 would cap a generator far below 10,000."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class LoadStats:
    """What one load-generator process saw, summed over its clients."""

    def __init__(self) -> None:
        self.connected = 0
        self.open = 0
        self.open_peak = 0
        self.open_at_stop = 0
        self.connect_failures: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.events = 0
        self.window_events = 0
        self.ages = [0] * (AGE_CAP_MS + 1)   # 1 ms buckets: each price event the age sample read in the window
        self.age_max = 0
        self.endings: Counter[str] = Counter()   # [pairs, last price of each] -> clients

    def add(self, other: LoadStats) -> None:
        """Sum `other` into this one (a process's totals over its client groups)."""
        for name in ("connected", "open_peak", "open_at_stop", "events", "window_events"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.connect_failures.update(other.connect_failures)
        self.disconnects.update(other.disconnects)
        self.endings.update(other.endings)
        self.ages = [a + b for a, b in zip(self.ages, other.ages, strict=False)]
        self.age_max = max(self.age_max, other.age_max)

    def as_json(self) -> dict[str, Any]:
        return {
            "connected": self.connected, "open_peak": self.open_peak, "open_at_stop": self.open_at_stop,
            "connect_failures": dict(self.connect_failures), "disconnects": dict(self.disconnects),
            "events": self.events, "window_events": self.window_events, "age_max": self.age_max,
            "ages": {str(age): count for age, count in enumerate(self.ages) if count},
            "endings": dict(self.endings),
        }


def _ws_client(host: str, port: int, path: str, source_ip: str, pairs: tuple[str, ...],
               timeline: tuple[float, float, float], connect_timeout: float, read_every: float,
               stats: LoadStats) -> None:
    """_sse_client over pricefeed's WebSocket: the same counts, ages and last prices."""
    window_start, window_end, stop_at = timeline
    prices: dict[bytes, bytes] = {}
    pair_keys = [(pair.encode(), b'"pair":"' + pair.encode() + b'"') for pair in pairs]
    sock = socket.socket()
    connected = False
    try:
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source_ip, 0))
        sock.settimeout(connect_timeout)
        deadline = time.time() + connect_timeout
        sock.connect((host, port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
                     f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            sock.settimeout(max(0.01, deadline - time.time()))
            chunk = sock.recv(65536)
            if not chunk:
                stats.connect_failures["closed before answering"] += 1
                return
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            stats.connect_failures["HTTP " + head[9:12].decode(errors="replace")] += 1
            return
        connected = True
        stats.connected += 1
        stats.open += 1
        stats.open_peak = max(stats.open_peak, stats.open)
        awaiting_snapshot = True
        while True:
            remaining = stop_at - time.time()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(262144)
            except TimeoutError:
                break
            if not chunk:
                stats.disconnects["closed by the server"] += 1
                return
            now = time.time()
            buffer += chunk
            cut = buffer.rfind(b"}}")
            if cut < 0:
                continue
            complete, buffer = buffer[:cut + 2], buffer[cut + 2:]
            pings = complete.count(_WS_PING)
            if pings:
                sock.sendall(_WS_PONG * pings)
            if awaiting_snapshot:
                snapshot = _WS_SNAPSHOT.search(complete)
                if snapshot:
                    prices.update(_SNAPSHOT_PRICE.findall(snapshot.group(1)))
                    awaiting_snapshot = False
            if read_every:
                count = complete.count(b'"event":"price"')
                if not count:
                    continue
                awaiting_snapshot = False
                stats.events += count
                if window_start <= now < window_end:
                    stats.window_events += count
                for pair, key in pair_keys:
                    at = complete.rfind(key)
                    if at >= 0:
                        found = _PRICE_AFTER_PAIR.match(complete, at + len(key))
                        if found:
                            prices[pair] = found.group(1)
                gevent.sleep(read_every)
                continue
            events = _WS_PRICE.findall(complete)
            if not events:
                continue
            awaiting_snapshot = False
            stats.events += len(events)
            if window_start <= now < window_end:
                stats.window_events += len(events)
                now_ms = int(now * 1000)
                ages = stats.ages
                for pair, price, ts in events:
                    prices[pair] = price
                    age = now_ms - int(ts)
                    if age > stats.age_max:
                        stats.age_max = age
                    ages[min(max(age, 0), AGE_CAP_MS)] += 1
            else:
                for pair, price, _ in events:
                    prices[pair] = price
        stats.open_at_stop += 1
    except TimeoutError:
        (stats.disconnects if connected else stats.connect_failures)["timeout"] += 1
    except OSError as error:
        reason = errno.errorcode.get(error.errno or 0, type(error).__name__)
        (stats.disconnects if connected else stats.connect_failures)[reason] += 1
    finally:
        sock.close()
        if connected:
            stats.open -= 1
        last = [prices[pair.encode()].decode() if pair.encode() in prices else None for pair in pairs]
        stats.endings[json.dumps([list(pairs), last])] += 1


def _sse_client(host: str, port: int, path: str, source_ip: str, pairs: tuple[str, ...],
            timeline: tuple[float, float, float], connect_timeout: float, read_every: float,
            stats: LoadStats) -> None:
    """One client: connect, read events until the stop time, and keep the last price of each pair.

    `read_every` 0: the client reads each chunk as it arrives and records the age of every
    price event in the window. Otherwise it reads what has accumulated every `read_every`
    seconds and records no ages (its events still count, and its last prices).
    """
    window_start, window_end, stop_at = timeline
    prices: dict[bytes, bytes] = {}
    pair_keys = [(pair.encode(), b'"pair":"' + pair.encode() + b'"') for pair in pairs]
    sock = socket.socket()
    connected = False
    try:
        # The port is chosen at connect(), per destination: each source address then has the
        # whole ephemeral range for this server.
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source_ip, 0))
        sock.settimeout(connect_timeout)
        deadline = time.time() + connect_timeout
        sock.connect((host, port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            sock.settimeout(max(0.01, deadline - time.time()))
            chunk = sock.recv(65536)
            if not chunk:
                stats.connect_failures["closed before answering"] += 1
                return
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            stats.connect_failures["HTTP " + head[9:12].decode(errors="replace")] += 1
            return
        connected = True
        stats.connected += 1
        stats.open += 1
        stats.open_peak = max(stats.open_peak, stats.open)
        awaiting_snapshot = True
        while True:
            remaining = stop_at - time.time()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(262144)
            except TimeoutError:
                break
            if not chunk:
                stats.disconnects["closed by the server"] += 1
                return
            now = time.time()
            buffer += chunk
            cut = buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            complete, buffer = buffer[:cut], buffer[cut + 2:]
            if awaiting_snapshot:
                # pricefeed's first event holds every pair's latest price; Flask-SSE has none.
                snapshot = _SNAPSHOT.search(complete)
                if snapshot:
                    prices.update(_SNAPSHOT_PRICE.findall(snapshot.group(1)))
                    awaiting_snapshot = False
            if read_every:
                # Outside the age sample only the count and the last price per pair matter:
                # count in C and look for each pair's last event from the end, rather than
                # parse every event (most of this process's CPU otherwise).
                count = complete.count(b"event: price") or complete.count(b"event:price")
                if not count:
                    continue
                awaiting_snapshot = False
                stats.events += count
                if window_start <= now < window_end:
                    stats.window_events += count
                for pair, key in pair_keys:
                    at = complete.rfind(key)
                    if at >= 0:
                        found = _PRICE_AFTER_PAIR.match(complete, at + len(key))
                        if found:
                            prices[pair] = found.group(1)
                gevent.sleep(read_every)
                continue
            events = _PRICE.findall(complete)
            if not events:
                continue
            awaiting_snapshot = False
            stats.events += len(events)
            if window_start <= now < window_end:
                stats.window_events += len(events)
            if window_start <= now < window_end:
                now_ms = int(now * 1000)
                ages = stats.ages
                for pair, price, ts in events:
                    prices[pair] = price
                    age = now_ms - int(ts)
                    if age > stats.age_max:
                        stats.age_max = age
                    ages[min(max(age, 0), AGE_CAP_MS)] += 1
            else:
                for pair, price, _ in events:
                    prices[pair] = price
        stats.open_at_stop += 1
    except TimeoutError:
        (stats.disconnects if connected else stats.connect_failures)["timeout"] += 1
    except OSError as error:
        reason = errno.errorcode.get(error.errno or 0, type(error).__name__)
        (stats.disconnects if connected else stats.connect_failures)[reason] += 1
    finally:
        sock.close()
        if connected:
            stats.open -= 1
        last = [prices[pair.encode()].decode() if pair.encode() in prices else None for pair in pairs]
        stats.endings[json.dumps([list(pairs), last])] += 1


def in_age_sample(index: int, sample_every: int) -> bool:
    """About one client in `sample_every`, spread over pair sets, source addresses and generators alike."""
    return zlib.crc32(index.to_bytes(4, "little")) % sample_every == 0


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Open clients first, first+step, ... < clients on the common schedule; their totals as JSON."""
    scenario = SCENARIOS[spec["scenario"]]
    timeline = (spec["window_start"], spec["window_end"], spec["stop_at"])
    transport = spec.get("transport", "sse")
    run_client = _ws_client if transport == "ws" else _sse_client
    groups: dict[str, LoadStats] = {}
    marks: dict[str, float] = {}

    def mark(name: str, at: float) -> None:
        gevent.sleep(max(0.0, at - time.time()))
        marks[name] = _cpu_self()
        marks[name.replace("cpu", "fds")] = len(os.listdir("/proc/self/fd"))

    markers = [gevent.spawn(mark, "cpu_window_start", timeline[0]), gevent.spawn(mark, "cpu_window_end", timeline[1])]
    clients = []
    for index in range(spec["first"], spec["clients"], spec["step"]):
        delay = spec["start_at"] + index / spec["ramp_per_s"] - time.time()
        if delay > 0:
            gevent.sleep(delay)
        pairs = client_pairs(scenario, index)
        group = client_group(scenario, index)
        stats = groups.setdefault(group.name, LoadStats())
        source_ip = spec["source_ips"][index % len(spec["source_ips"])]
        path = stream_path(spec["target"], pairs, group.interval_ms, transport)
        clients.append(gevent.spawn(run_client, spec["host"], spec["port"], path,
                                    source_ip, pairs, timeline, spec["connect_timeout"],
                                    0 if in_age_sample(index, spec["sample_every"]) else BATCH_READ_S, stats))
    everything: list[gevent.Greenlet] = [*clients, *markers]
    gevent.joinall(everything, timeout=max(0.0, timeline[2] - time.time()) + spec["connect_timeout"] + 5)
    gevent.killall(everything, timeout=5)
    total = LoadStats()
    for stats in groups.values():
        total.add(stats)
    return {**total.as_json(), "groups": {name: stats.as_json() for name, stats in groups.items()},
            "cpu_s": round(_cpu_self(), 2),
            "window_cpu_s": round(marks.get("cpu_window_end", 0) - marks.get("cpu_window_start", 0), 2),
            "fds_at_window_end": marks.get("fds_window_end")}


if __name__ == "__main__":
    raise_open_files_limit()
    print(json.dumps(run_child(json.loads(sys.argv[1]))), flush=True)
