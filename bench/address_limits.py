"""What the per-address limits cost per stream open and close, against a real redis-server.

    flock /tmp/pricefeed-bench.lock .venv/bin/python -m bench.address_limits --workers 8 --calls 2000

Runs each operation `--calls` times, one after another from this process, with `--workers` live
workers listed in Redis (the acquire script reads one hash per live worker), and reports each
as microseconds per call and as a ratio to a PING round trip measured in the same run (the
anchor: on a shared machine only ratios compare). The host tier (memory-mapped table, no
network) is measured the same way. Stops by itself.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

from pricefeed.cluster.host_address_counts import HostAddressCounts, HostAddressRates
from pricefeed.cluster.redis_address_counts import RedisAddressCounts
from pricefeed.cluster.redis_client import redis_client
from tests.support.redis_server import RedisServer


def named(worker_id: str) -> Callable[[], str]:
    return lambda: worker_id


def per_call(calls: int, operation: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for n in range(calls):
        operation(n)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    address = lambda n: f"198.51.100.{n % 200}"   # noqa: E731 - 200 addresses in turn
    with RedisServer() as server:
        client = redis_client(server.url)
        listed = [RedisAddressCounts(client, "bench", named(f"bench-host:{w}")) for w in range(args.workers)]
        for counts in listed:
            counts.resync({})
        me = listed[0]
        me.acquire("warm-up", None)
        me.release("warm-up")
        me.take_new("warm-up", 100.0, 50, 10.0)
        ping = per_call(args.calls, lambda n: client.ping())
        results = {
            "redis acquire (cap check + count)": per_call(args.calls, lambda n: me.acquire(address(n), 1_000_000)),
            "redis release": per_call(args.calls, lambda n: me.release(address(n))),
            "redis admission share (GCRA)": per_call(args.calls, lambda n: me.take_new(address(n), 1e6, 1000, 10.0)),
        }
    directory = tempfile.mkdtemp(prefix="pricefeed-bench-")
    host, rates = HostAddressCounts("bench", directory=directory), HostAddressRates("bench", directory=directory)
    host.start()
    rates.start()
    try:
        results["host acquire"] = per_call(args.calls, lambda n: host.acquire(address(n), 1_000_000))
        results["host release"] = per_call(args.calls, lambda n: host.add(address(n), -1))
        results["host admission share"] = per_call(args.calls, lambda n: rates.take(address(n), 1e6, 1000, 10.0))
    finally:
        host.stop()
        rates.stop()
    print(f"{args.workers} live workers listed, {args.calls} calls each; anchor PING round trip {ping:.0f} µs")
    for name, micros in results.items():
        print(f"  {name:36s} {micros:7.1f} µs  = {micros / ping:5.2f} × PING")


if __name__ == "__main__":
    main()
