"""A load generator whose clients reconnect the way a browser's EventSource (and pricefeed.js) does.

    python -m bench.browser_load '<spec as JSON>'     (bench/overload.py and bench/restart.py start these)

One greenlet and one raw socket per client, connecting from the spec's source
addresses in turn (as bench/fanout_client.py, whose parsing and limits it reuses).
Unlike that generator, a client never gives up before the stop time:
- `503` (shed, at capacity, shutting down): it records how long the answer took,
  waits the `Retry-After` plus up to 1 s of jitter, and tries again;
- the server ends its stream: it waits the last `retry:` the server sent (as
  EventSource does) and reconnects, recording when its stream closed and when it
  was streaming again (its first event after the new response head);
- a connect error (refused, reset, timeout): it waits 1-3 s, like a browser's
  retry after a network error, and tries again.
Prints one JSON object: connects, refusals (count and a 1 ms histogram of how long
they took), connect errors by reason, closes by the server, each reconnected
client's (closed_at, back_at), price ages of the age sample in 1 ms buckets (in the
window, and separately after `recovery_from` if given), and its own CPU seconds.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import errno  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402

from bench.fanout_client import BATCH_READ_S, IP_BIND_ADDRESS_NO_PORT, in_age_sample, raise_open_files_limit  # noqa: E402
from bench.fanout_scenarios import SCENARIOS, client_pairs, stream_path  # noqa: E402

AGE_CAP_MS = 60_000
_PRICE_TS = re.compile(rb'event: price\ndata: \{[^\n]*?"ts":([0-9]+)')
_RETRY = re.compile(rb"(?:^|\n)retry: ([0-9]+)\n")
_RETRY_AFTER = re.compile(rb"\r\nRetry-After: ([0-9]+)", re.IGNORECASE)


class Histogram:
    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.max = 0

    def add(self, ms: float) -> None:
        value = min(max(int(ms), 0), AGE_CAP_MS)
        self.buckets[value] += 1
        self.max = max(self.max, int(ms))

    def as_json(self) -> dict[str, Any]:
        return {"buckets": {str(k): v for k, v in self.buckets.items()}, "max": self.max}


class Stats:
    def __init__(self) -> None:
        self.connects = 0                      # responses with 200
        self.open = 0
        self.refusals: Counter[str] = Counter()   # 503 by error code
        self.refusal_ms = Histogram()          # connect() -> complete 503 head
        self.connect_errors: Counter[str] = Counter()
        self.server_closes = 0
        self.returns: list[tuple[float, float]] = []   # (stream closed by the server, streaming again)
        self.ages = Histogram()                # price ages of the sample, in the window
        self.recovery_ages = Histogram()       # the same, from recovery_from on
        self.window_events = 0
        self.gave_up = 0                       # clients not streaming at the stop time
        self.first_connected_at: list[float] = []

    def as_json(self) -> dict[str, Any]:
        return {"connects": self.connects, "open_at_stop": self.open, "refusals": dict(self.refusals),
                "refusal_ms": self.refusal_ms.as_json(), "connect_errors": dict(self.connect_errors),
                "server_closes": self.server_closes, "returns": self.returns, "ages": self.ages.as_json(),
                "recovery_ages": self.recovery_ages.as_json(), "window_events": self.window_events,
                "not_streaming_at_stop": self.gave_up, "first_connected_at": self.first_connected_at}


def _open(host: str, port: int, path: str, source_ip: str, timeout: float) -> tuple[socket.socket, bytes, bytes]:
    """Connect and read the response head: (socket, head, what followed it)."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source_ip, 0))
        sock.settimeout(timeout)
        deadline = time.time() + timeout
        sock.connect((host, port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            sock.settimeout(max(0.01, deadline - time.time()))
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before answering")
            buffer += chunk
    except BaseException:
        sock.close()
        raise
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return sock, head, rest


def _phase(recovery_from: float) -> str:
    """Counters are split at `recovery_from` (the restart): what clients saw before it, and after."""
    return "after restart: " if time.time() >= recovery_from else ""


def browser(index: int, spec: dict[str, Any], stats: Stats) -> None:
    scenario = SCENARIOS[spec["scenario"]]
    pairs = client_pairs(scenario, index)
    path = stream_path("pricefeed", pairs)
    source_ip = spec["source_ips"][index % len(spec["source_ips"])]
    window_start, window_end, stop_at = spec["window_start"], spec["window_end"], spec["stop_at"]
    recovery_from = spec.get("recovery_from") or float("inf")
    sampled = in_age_sample(index, spec["sample_every"])
    closed_at: float | None = None       # when the server last ended our stream
    retry_ms = 3000                       # EventSource's default until the server says otherwise
    streaming = False
    while time.time() < stop_at:
        started = time.time()
        try:
            sock, head, buffer = _open(spec["host"], spec["port"], path, source_ip, spec["connect_timeout"])
        except (OSError, ConnectionError) as error:
            reason = errno.errorcode.get(getattr(error, "errno", 0) or 0, None) or str(error) or type(error).__name__
            stats.connect_errors[_phase(recovery_from) + reason] += 1
            gevent.sleep(random.uniform(1, 3))
            continue
        try:
            if not head.startswith(b"HTTP/1.1 200"):
                took_ms = (time.time() - started) * 1000
                status = head[9:12].decode(errors="replace")
                body = buffer
                try:
                    sock.settimeout(1)
                    while b"}" not in body:
                        more = sock.recv(4096)
                        if not more:
                            break
                        body += more
                except OSError:
                    pass
                code = re.search(rb'"error":"([a-z_]+)"', body)
                stats.refusals[_phase(recovery_from) + f"{status} {code.group(1).decode() if code else ''}".strip()] += 1
                stats.refusal_ms.add(took_ms)
                retry_after = _RETRY_AFTER.search(head)
                gevent.sleep((int(retry_after.group(1)) if retry_after else 1) + random.uniform(0, 1))
                continue
            stats.connects += 1
            stats.open += 1
            streaming = True
            first_event = True
            while True:
                remaining = stop_at - time.time()
                if remaining <= 0:
                    return
                sock.settimeout(remaining)
                try:
                    chunk = sock.recv(262144)
                except TimeoutError:
                    return
                if not chunk:
                    break
                now = time.time()
                buffer += chunk
                cut = buffer.rfind(b"\n\n")
                if cut < 0:
                    continue
                complete, buffer = buffer[:cut + 2], buffer[cut + 2:]
                for found in _RETRY.findall(complete):
                    retry_ms = int(found)
                if first_event:
                    first_event = False
                    if closed_at is not None:
                        stats.returns.append((closed_at, now))
                        closed_at = None
                    else:
                        stats.first_connected_at.append(now)
                if sampled:
                    now_ms = now * 1000
                    for ts in _PRICE_TS.findall(complete):
                        age = now_ms - int(ts)
                        if window_start <= now < window_end:
                            stats.ages.add(age)
                            stats.window_events += 1
                        if now >= recovery_from:
                            stats.recovery_ages.add(age)
                else:
                    if window_start <= now < window_end:
                        stats.window_events += complete.count(b"event: price")
                    gevent.sleep(BATCH_READ_S)
            # The server ended the stream: come back after its retry:, as EventSource does.
            stats.open -= 1
            streaming = False
            stats.server_closes += 1
            closed_at = time.time()
            gevent.sleep(retry_ms / 1000)
        except OSError as error:
            if streaming:
                stats.open -= 1
                streaming = False
                closed_at = time.time()
            stats.connect_errors[_phase(recovery_from) + errno.errorcode.get(error.errno or 0, type(error).__name__)] += 1
            gevent.sleep(random.uniform(1, 3))
        finally:
            sock.close()
    if not streaming:
        stats.gave_up += 1


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    stats = Stats()
    greenlets = []
    for index in range(spec["first"], spec["clients"], spec["step"]):
        delay = spec["start_at"] + index / spec["ramp_per_s"] - time.time()
        if delay > 0:
            gevent.sleep(delay)
        greenlets.append(gevent.spawn(browser, index, spec, stats))
    gevent.joinall(greenlets, timeout=max(0.0, spec["stop_at"] - time.time()) + spec["connect_timeout"] + 5)
    gevent.killall(greenlets, timeout=5)
    return {**stats.as_json(), "cpu_s": round(_cpu_self(), 2)}


if __name__ == "__main__":
    raise_open_files_limit()
    print(json.dumps(run_child(json.loads(sys.argv[1]))), flush=True)
