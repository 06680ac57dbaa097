"""bench/ha.py's load generator: thousands of SSE streams, run inside the clients' namespace.

    ip netns exec <clients-ns> python -m bench.ha_clients '{"urls": {...}, "per_host": 1000, ...}'

One greenlet per stream. It prints a JSON status line every 0.1 s: per app host the streams
open, the streams that ended (disconnected), the modes the streams were last told, and, over
all streams, the wall time each epoch was first seen and the time of the latest tick of any
kind (the local tier's `0-n` ticks included). Sample streams (the first `sample` per host)
also check fencing and count seq gaps within an epoch. Its own CPU seconds are in every line.
One stream per host (the loss sample) keeps every tick it got as (pair, ts, price), and an
observer WebSocket straight to the exchange keeps every aggTrade it sent, so bench/ha.py can count
the trades made during a failover that never reached a browser. Both go to `dump` at the end.
Stops after `duration` seconds, or once `stop_file` exists.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402

from bench.fanout_client import raise_open_files_limit  # noqa: E402

_ID = re.compile(rb"\nid: (\d+)-(\d+)")
_PRICE = re.compile(rb'"pair":"([^"]+)","symbol":"([^"]+)","price":"([^"]+)","ts":(\d+)')
_MODE = re.compile(rb'event: (?:snapshot|status)\ndata: [^\n]*"mode":"([a-z]+)"')


class Totals:
    def __init__(self, hosts):
        self.open: Counter[str] = Counter()
        self.ended: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.modes: dict[str, Counter[str]] = {host: Counter() for host in hosts}
        self.epoch_first_seen: dict[int, float] = {}
        self.last_tick_at = 0.0
        self.last_epoch_tick_at = 0.0
        self.fencing_violations = 0
        self.seq_gaps = 0
        self.ticks = 0


def observe_exchange(url: str, symbols: list[str], trades: list) -> None:
    """Every aggTrade the exchange sends, as (symbol, E, price, arrival time)."""
    import websocket
    path = "/stream?streams=" + "/".join(f"{s.lower()}@aggTrade" for s in symbols)
    while True:
        try:
            ws = websocket.create_connection(url + path, timeout=30)
            while True:
                data = json.loads(ws.recv()).get("data", {})
                if data.get("e") == "aggTrade":
                    trades.append((data["s"], data["E"], data["p"], time.time()))
        except Exception:  # noqa: BLE001 - the observer reconnects, a bench never crashes on it
            gevent.sleep(0.5)


def stream(host: str, url: str, totals: Totals, sample: bool, kept: list | None = None) -> None:
    parts = urlsplit(url)
    mode = None
    try:
        sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        sock.settimeout(60)
        sock.sendall(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.hostname}\r\n\r\n".encode())
    except OSError:
        totals.failed[host] += 1
        return
    totals.open[host] += 1
    newest, buffer = 0, b""
    last_seq: dict[int, int] = {}
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            cut = buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            block, buffer = buffer[:cut], buffer[cut + 2:]
            now = time.time()
            for match in _MODE.finditer(block):
                if mode is not None:
                    totals.modes[host][mode] -= 1
                mode = match.group(1).decode()
                totals.modes[host][mode] += 1
            if kept is not None:
                kept.extend((m.group(2).decode(), int(m.group(4)), m.group(3).decode(), now)
                            for m in _PRICE.finditer(block))
            for match in _ID.finditer(block):
                epoch, seq = int(match.group(1)), int(match.group(2))
                totals.ticks += 1
                totals.last_tick_at = now
                if epoch == 0:
                    continue
                totals.last_epoch_tick_at = now
                totals.epoch_first_seen.setdefault(epoch, now)
                if sample:
                    if epoch < newest:
                        totals.fencing_violations += 1
                    elif epoch == newest and seq > last_seq.get(epoch, seq - 1) + 1:
                        totals.seq_gaps += seq - last_seq[epoch] - 1
                    newest = max(newest, epoch)
                    last_seq[epoch] = max(seq, last_seq.get(epoch, 0))
    except OSError:
        pass
    finally:
        totals.open[host] -= 1
        totals.ended[host] += 1
        if mode is not None:
            totals.modes[host][mode] -= 1
        sock.close()


def main() -> None:
    spec = json.loads(sys.argv[1])
    raise_open_files_limit()
    hosts = list(spec["urls"])
    totals = Totals(hosts)
    started = time.time()
    trades: list = []
    kept: dict[str, list] = {host: [] for host in hosts}
    gevent.spawn(observe_exchange, spec["exchange_ws"], spec["symbols"], trades)
    for index in range(spec["per_host"]):
        for host in hosts:
            gevent.spawn(stream, host, spec["urls"][host], totals, index < spec.get("sample", 10),
                         kept[host] if index == 0 else None)
        if index % 100 == 99:
            gevent.sleep(0.05)
    while time.time() - started < spec["duration"] and not os.path.exists(spec["stop_file"]):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({
            "t": time.time(), "open": dict(totals.open), "ended": dict(totals.ended),
            "failed": dict(totals.failed), "modes": {h: {m: n for m, n in c.items() if n} for h, c in totals.modes.items()},
            "epochs": {str(e): t for e, t in totals.epoch_first_seen.items()},
            "last_tick_at": totals.last_tick_at, "last_epoch_tick_at": totals.last_epoch_tick_at,
            "fencing_violations": totals.fencing_violations, "seq_gaps": totals.seq_gaps,
            "ticks": totals.ticks, "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}), flush=True)
        gevent.sleep(0.1)
    with open(spec["dump"], "w") as out:
        json.dump({"trades": trades, "kept": kept}, out)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
