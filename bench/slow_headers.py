"""A slow-header attack against real gunicorn (2 workers), with and without the pending limits.

    flock /tmp/pricefeed-bench.lock .venv/bin/python -m bench.slow_headers --connections 3000 --seconds 20

For each setting of PRICEFEED_MAX_PENDING_PER_IP (`--limits`, default "32,0": the default and
none), one gunicorn instance runs with a real Redis and the simulator. First the anchor: a
browser from 127.0.0.3 opens streams and asks /health, with no attack (on a shared machine only
ratios to it compare). Then `--connections` slow-header connections from 127.0.0.2 (a line every
2 s, reopened when closed) run for `--seconds`, while the browser keeps opening a stream and
asking /health every half second. Printed per setting: connections the server held from the
attacker (ss, sampled), open and /health times (median, max), the workers' RSS and open files,
and the generator's CPU. Loopback only; stops by itself.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.proc_sampler import _cpu_seconds, children_of
from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.slow_headers import ATTACKER, SlowHeaders, held_from, raise_file_limit
from tests.support.sse_client import SSEClient

BROWSER = "127.0.0.3"
STREAM = f"/api/market-data/stream?pairs={PAIRS}"


def open_time(app: GunicornProcess) -> float:
    started = time.monotonic()
    client = SSEClient(app.url + STREAM, timeout=15, source_address=(BROWSER, 0))
    try:
        client.wait_for(lambda c: c.of("snapshot") or c.of("price"), 15, "the first event")
        return time.monotonic() - started
    finally:
        client.close()


def health_time(app: GunicornProcess) -> float:
    started = time.monotonic()
    app.get("/api/market-data/health", timeout=15)
    return time.monotonic() - started


def workers_cpu(app: GunicornProcess) -> float:
    return sum(_cpu_seconds(pid) or 0.0 for pid in children_of(app.proc.pid))


def workers_rss_and_files(app: GunicornProcess) -> tuple[float, int]:
    rss, files = 0, 0
    for pid in children_of(app.proc.pid):
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * 4096
            files += len(list(Path(f"/proc/{pid}/fd").iterdir()))
        except OSError:
            pass
    return rss / 2**20, files


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms (n={len(values)})"


def run(limit: int, connections: int, seconds: float, sim, redis_url: str) -> None:
    env = instance_env(sim, redis_url, new_prefix(), PRICEFEED_MAX_PENDING_PER_IP=str(limit),
                       PRICEFEED_MAX_CLIENTS="20000")
    with GunicornProcess(workers=2, env=env) as app:
        all_live([app])
        anchor_open = [open_time(app) for _ in range(10)]
        anchor_health = [health_time(app) for _ in range(10)]
        rss_before, files_before = workers_rss_and_files(app)
        opens, healths, held = [], [], []
        cpu_started, server_cpu_started = time.process_time(), workers_cpu(app)
        with SlowHeaders(app.port, connections) as attack:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                held.append(held_from(app.port, ATTACKER))
                opens.append(open_time(app))
                healths.append(health_time(app))
                time.sleep(0.5)
            rss_during, files_during = workers_rss_and_files(app)
            opened, closed = attack.opened, attack.closed_by_server
            server_cpu = workers_cpu(app) - server_cpu_started
        cpu = time.process_time() - cpu_started
    print(f"--- PRICEFEED_MAX_PENDING_PER_IP={limit} (2 workers; bound {2 * limit if limit else 'none'}) ---")
    print(f"attacker: {connections} connections wanted, {opened} opened, {closed} closed by the server; "
          f"held by the server (ss, {len(held)} samples): median {statistics.median(held):.0f}, max {max(held)}")
    print(f"stream open from {BROWSER}: anchor {summary(anchor_open)}; under attack {summary(opens)} "
          f"(median ×{statistics.median(opens) / statistics.median(anchor_open):.1f})")
    print(f"/health: anchor {summary(anchor_health)}; under attack {summary(healths)} "
          f"(median ×{statistics.median(healths) / statistics.median(anchor_health):.1f})")
    print(f"workers: RSS {rss_before:.0f} → {rss_during:.0f} MiB, open files {files_before} → {files_during}")
    print(f"CPU over {seconds:.0f} s: the workers {server_cpu:.1f} s; the generator (this process: attacker thread "
          f"and browser) {cpu:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--limits", default="32,0", help="PRICEFEED_MAX_PENDING_PER_IP values to run, in turn")
    args = parser.parse_args()
    raise_file_limit(args.connections + 1024)
    print("machine shared with other engineers: compare the ratios to each run's anchor, not the figures")
    with SimulatorProcess(pairs=SYMBOLS, rate=20) as sim, RedisServer() as redis_server:
        for limit in (int(value) for value in args.limits.split(",")):
            run(limit, args.connections, args.seconds, sim, redis_server.url)


if __name__ == "__main__":
    main()
