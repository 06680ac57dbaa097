"""Many pairs over several exchange connections: how many, and how soon every pair is priced.

    flock /tmp/pricefeed-bench.lock .venv/bin/python -m bench.many_pairs --counts 200,500,1000

For each pair count: the simulator lists that many symbols and trades each at the same rate
(`--per-pair-rate` trades a second), one gunicorn instance with `--workers` workers on its own
redis-server serves them. Reported: the connections the exchange saw (each one's streams and
request-target length), the seconds from gunicorn's start until the whole set is open, and until
every pair has a fresh price in `/prices`. The first count is the anchor: the other rows are
also given as ratios to it, since the machine may be shared. Stops by itself.
"""
from __future__ import annotations

import argparse
import json
import time

from tests.support.deployment import ONE_ADDRESS_LOAD, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until


def measure(count: int, per_pair_rate: float, workers: int, timeout: float) -> dict:
    symbols = [f"P{index:04d}USDT" for index in range(count)]
    pairs = [f"P{index:04d}/USDT" for index in range(count)]
    with SimulatorProcess(pairs=",".join(symbols), rate=per_pair_rate * count) as sim, RedisServer() as redis:
        started = time.monotonic()
        with GunicornProcess(workers=workers, env={
                "PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url,
                "PRICEFEED_PAIRS": ",".join(pairs), "PRICEFEED_REDIS_URL": redis.url,
                "PRICEFEED_REDIS_PREFIX": new_prefix(), "PRICEFEED_LOG_LEVEL": "WARNING",
                **ONE_ADDRESS_LOAD}) as app:
            def planned() -> int | None:
                for _ in range(2 * workers):
                    health = app.health()
                    if health["worker"]["role"] == "leader":
                        return health["upstream"]["connections_planned"]
                return None
            connections = wait_until(planned, timeout, message="the leader's plan")
            wait_until(lambda: sim.stats()["connections_open"] == connections, timeout, interval=0.02,
                       message="the whole set open")
            set_open_s = time.monotonic() - started

            def all_priced() -> bool:
                body = app.get_json("/api/market-data/prices")[1]
                return len(body["prices"]) == count and not any(entry["stale"] for entry in body["prices"])
            wait_until(all_priced, timeout, interval=0.1, message=f"all {count} pairs priced")
            all_priced_s = time.monotonic() - started
            stats = sim.stats()
            # A lease that changed hands (a busy machine) opens the set twice: say so beside the count.
            epoch = wait_until(lambda: app.health()["leader"]["epoch"], 10, message="the leader's epoch")
    return {"pairs": count, "connections": connections,
            "per_connection": [(c["streams"], c["target_length"]) for c in stats["open_connections"]],
            "connections_total": stats["connections_total"], "max_concurrent": stats["max_concurrent"],
            "leader_epoch": epoch,
            "set_open_s": round(set_open_s, 2), "all_priced_s": round(all_priced_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", default="200,500,1000", help="pair counts; the first is the anchor")
    parser.add_argument("--per-pair-rate", type=float, default=0.6, help="trades a second per symbol")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args()
    rows = [measure(int(count), args.per_pair_rate, args.workers, args.timeout) for count in args.counts.split(",")]
    anchor = rows[0]
    for row in rows:
        row["set_open_vs_anchor"] = round(row["set_open_s"] / anchor["set_open_s"], 2)
        row["all_priced_vs_anchor"] = round(row["all_priced_s"] / anchor["all_priced_s"], 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
