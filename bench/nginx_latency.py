"""What nginx (deploy/nginx/pricefeed.conf) adds to a price's trip: the same events, direct and proxied.

    flock /tmp/pricefeed-bench.lock .venv/bin/python -m bench.nginx_latency --duration 30 --pairs-of-streams 4

One simulator (3 pairs, `--rate` ticks/s), one gunicorn worker (no Redis), and a real
nginx running the deploy file in front of it (tests/support/nginx.py). K readers
stream directly from gunicorn and K through nginx, all from this process; for every
price event id that a direct and a proxied reader both received, the gap between
the two arrival times. Prints one JSON object: gap p50/p95/p99/max (ms), how many
events, whether the proxied streams stayed on the direct-write path, this process's
own CPU (the load generator) and the load average before the run. Loopback only;
stops by itself after `--duration` seconds.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

from tests.support.gunicorn import GunicornProcess
from tests.support.nginx import NginxProcess
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient

PAIRS = "BTC/USD,ETH/USD,SOL/USD"
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"
STREAM = f"/api/market-data/stream?pairs={PAIRS}"
ADMIN_TOKEN = "bench-nginx-latency"     # the detailed health report (clients) is for operators


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--rate", type=float, default=50, help="exchange ticks per second, all pairs")
    parser.add_argument("--pairs-of-streams", type=int, default=4, help="K direct and K proxied readers")
    args = parser.parse_args()
    if not 1 <= args.duration <= 600 or not 1 <= args.pairs_of_streams <= 100 or not 0 < args.rate <= 1000:
        raise SystemExit("duration 1..600 s, pairs-of-streams 1..100, rate up to 1000")
    loadavg_before = open("/proc/loadavg").read().split()[:3]
    with SimulatorProcess(pairs=SYMBOLS, rate=args.rate) as sim:
        env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url,
               "PRICEFEED_PAIRS": PAIRS, "PRICEFEED_LOG_LEVEL": "WARNING",
               "PRICEFEED_ADMIN_TOKEN": ADMIN_TOKEN}
        with GunicornProcess(workers=1, env=env) as app, NginxProcess(app.port) as nginx:
            cpu_before = resource.getrusage(resource.RUSAGE_SELF)
            direct = [SSEClient(app.url + STREAM) for _ in range(args.pairs_of_streams)]
            proxied = [SSEClient(nginx.url + STREAM) for _ in range(args.pairs_of_streams)]
            try:
                time.sleep(args.duration)    # the measured window: the readers record arrivals meanwhile
                clients = app.get_json("/api/market-data/health",
                                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})[1]["clients"]
            finally:
                for client in direct + proxied:
                    client.close()
            cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    gaps: list[float] = []
    for near, far in zip(direct, proxied, strict=False):
        arrived = {event.id: event.received_at for event in near.of("price")}
        gaps += [event.received_at - arrived[event.id] for event in far.of("price") if event.id in arrived]
    gaps.sort()
    cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    report = {
        "duration_s": args.duration, "rate": args.rate, "readers_each_way": args.pairs_of_streams,
        "events_compared": len(gaps),
        "gap_ms": {"p50": round(statistics.median(gaps) * 1000, 2), "p95": round(percentile(gaps, 0.95) * 1000, 2),
                   "p99": round(percentile(gaps, 0.99) * 1000, 2), "max": round(gaps[-1] * 1000, 2),
                   "min": round(gaps[0] * 1000, 2)} if gaps else None,
        "streams": clients["clients"], "streams_direct_write": clients["clients_direct"],
        "loadgen_cpu_pct": round(100 * cpu_s / args.duration, 1),
        "loadavg_before": loadavg_before,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
