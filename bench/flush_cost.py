"""What a flush costs per client, against a bare broadcast loop, on the same sockets in one process.

    .venv/bin/python -m bench.flush_cost --clients 2500 --reps 15
    .venv/bin/python -m bench.flush_cost --clients 2500 --against <commit>   # also the flusher of that commit

N loopback TCP connections; each round one tick (every client is on all 10 pairs, every
tick) is flushed by the hub's flusher, or sent by a bare loop — one chunk built once,
one gevent `send()` per client, nothing else — and every client's end is drained
before the next round. Rounds of each variant are interleaved and repeated, and the
median of the process's CPU time per write is printed for each with the ratio to
the bare loop: on a machine shared with other work, bench.fanout's two runs of whole
servers are minutes apart, while here every variant sees the same load, the same
sockets and the same kernel cost of a write, so the ratio is what the flusher adds
to the write itself. `--against COMMIT` adds the flusher as it was at that commit
(`git show COMMIT:pricefeed/delivery/flusher.py`) as a third variant.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.fanout_client import raise_open_files_limit  # noqa: E402
from bench.fanout_scenarios import PAIRS  # noqa: E402
from pricefeed.delivery.flusher import Flusher  # noqa: E402
from pricefeed.delivery.hub import Hub  # noqa: E402
from pricefeed.ticks import PriceTick  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 10          # ticks per measurement


def flusher_at(commit: str) -> type:
    """The Flusher class of pricefeed/delivery/flusher.py at `commit`, imported beside today's."""
    source = subprocess.run(["git", "show", f"{commit}:pricefeed/delivery/flusher.py"], cwd=ROOT, check=True,
                            capture_output=True).stdout
    path = Path(tempfile.mkdtemp()) / "flusher_then.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("flusher_then", path)
    assert spec is not None and spec.loader is not None     # a .py path always has a source loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Flusher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=2500)
    parser.add_argument("--reps", type=int, default=15, help="measurements of each variant, interleaved")
    parser.add_argument("--against", help="a commit whose flusher is measured too")
    args = parser.parse_args()
    if not 1 <= args.clients <= 9000 or not 1 <= args.reps <= 100:
        raise SystemExit("clients must be 1..9,000 and reps 1..100")
    raise_open_files_limit()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    servers, browsers = [], []
    for _ in range(args.clients):
        browser = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        browser.setblocking(False)
        servers.append(server)
        browsers.append(browser)

    def drain() -> None:
        for browser in browsers:
            try:
                while browser.recv(1 << 16):
                    pass
            except BlockingIOError:
                pass

    flushers: dict[str, type] = {"flusher": Flusher}
    if args.against:
        flushers[f"flusher at {args.against}"] = flusher_at(args.against)
    hubs = {}
    for name, flusher_class in flushers.items():
        hub = Hub(PAIRS, max_clients=args.clients, stale_after=60)
        for server in servers:
            hub.ready(hub.connect(PAIRS, server))
        hubs[name] = (hub, flusher_class(hub))
    seq = 0

    def publish() -> None:
        nonlocal seq
        seq += 1
        pair = PAIRS[seq % len(PAIRS)]
        tick = PriceTick(pair, pair.split("/")[0] + "USDT", f"{100 + seq % 7}.12345678", int(time.time() * 1000),
                         "binance", "99.50000000", 1, seq)
        for hub, _ in hubs.values():
            hub.publish(tick)

    def flush_rounds(name: str) -> float:
        hub, flusher = hubs[name]
        for every, _ in hubs.values():
            every.take_batch()           # each flush below then writes one tick, as the bare loop does
        cpu = 0.0
        for _ in range(ROUNDS):
            publish()
            batch = hub.take_batch()
            started = time.process_time()
            flusher.flush(batch)
            cpu += time.process_time() - started
            drain()
        return cpu

    def bare_rounds() -> float:
        cpu = 0.0
        for _ in range(ROUNDS):
            publish()
            entry = hubs["flusher"][0].book
            event = max(entry.values(), key=lambda e: e.version).frame[0]
            started = time.process_time()
            framed = b"%X\r\n%s\r\n" % (len(event), event)      # built once per tick
            for server in servers:                                # one send per client
                sent = server.send(framed)
                if sent < len(framed):
                    server.sendall(framed[sent:])
            cpu += time.process_time() - started
            drain()
        return cpu

    results: dict[str, list[float]] = {name: [] for name in (*flushers, "bare loop")}
    writes = ROUNDS * args.clients
    for _ in range(args.reps):
        for name in flushers:
            results[name].append(flush_rounds(name) / writes * 1e6)
        results["bare loop"].append(bare_rounds() / writes * 1e6)
    bare = statistics.median(results["bare loop"])
    print(f"{args.clients:,} clients, {args.reps} × {ROUNDS} ticks each, CPU µs per write (median, min):")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:28s} {median:6.2f}  {min(values):6.2f}   × {median / bare:.2f} the bare loop")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
