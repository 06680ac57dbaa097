"""Leadership stability and Redis cost under load, for a Redis deployment.

    .venv/bin/python -m bench.soak --clients 100,2000 --duration 300

One gunicorn instance with 2 gevent workers on its own redis-server, the simulator
at 20 ticks/s on 5 pairs. For each client count it holds that many SSE streams for
`duration` seconds and reports: leadership changes (the lease epoch counter before
and after), Redis connections (INFO clients), Redis commands per published tick,
price age at receipt, disconnects, and whether every client ends on the exchange's
final prices. Loopback only; stops by itself.
"""
from __future__ import annotations

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from bench.sse_load import percentile, run_load  # noqa: I001 - patches gevent first
from tests.support.deployment import instance_env, new_prefix  # noqa: E402
from tests.support.gunicorn import GunicornProcess  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

PAIRS = "BTC/USD,ETH/USD,SOL/USD,BNB/USD,XRP/USD"
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT"


def leader_published(app: GunicornProcess) -> int:
    for _ in range(100):
        health = app.health()
        if health["worker"]["role"] == "leader":
            return health["bus"]["published"]
    raise RuntimeError("the leader worker never answered /health")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="100,2000")
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--rate", type=float, default=20)
    args = parser.parse_args()
    rows = []
    with RedisServer() as redis_server, SimulatorProcess(pairs=SYMBOLS, rate=args.rate) as sim:
        prefix = new_prefix()
        env = instance_env(sim, redis_server.url, prefix, PRICEFEED_PAIRS=PAIRS, PRICEFEED_MAX_CLIENTS="1900",
                           PRICEFEED_WORKER_CONNECTIONS="2000", PRICEFEED_LOG_LEVEL="WARNING")
        with GunicornProcess(workers=2, env=env) as app:
            wait_until(lambda: app.health()["mode"] == "live", 20, message="live")
            for count in [int(c) for c in args.clients.split(",")]:
                sim.market(paused=False)
                epoch_before = int(redis_server.client.get(f"{prefix}:epoch"))
                commands_before = redis_server.commands_processed()
                published_before = leader_published(app)
                connections: list[int] = []

                def sample_connections() -> None:
                    for _ in range(int(args.duration / 5) + 5):
                        connections.append(redis_server.info_clients())
                        gevent.sleep(5)
                sampler = gevent.spawn(sample_connections)
                gevent.spawn_later(count / 500 + args.duration - 2, sim.market, paused=True)
                started = time.time()
                result = run_load(f"{app.url}/api/market-data/stream?pairs={PAIRS}", count, args.duration)
                sampler.kill()
                elapsed = time.time() - started
                commands = redis_server.commands_processed() - commands_before
                published = leader_published(app) - published_before
                epoch_after = int(redis_server.client.get(f"{prefix}:epoch"))
                final = {p: sim.prices()[s]["price"] for p, s in zip(PAIRS.split(","), SYMBOLS.split(","), strict=True)}
                rows.append({
                    "clients": count, "duration_s": round(elapsed), "connected": result.connected,
                    "connect_failures": result.connect_failures, "disconnects": result.disconnects,
                    "leadership_changes": epoch_after - epoch_before,
                    "redis_connections_max": max(connections, default=None),
                    "redis_connections_min": min(connections, default=None),
                    "ticks_published": published,
                    "redis_commands_per_tick": round(commands / max(published, 1), 3),
                    "age_ms_p50": round(percentile(result.ages_ms, 0.5), 1),
                    "age_ms_p99": round(percentile(result.ages_ms, 0.99), 1),
                    "events": result.events,
                    "clients_on_final_prices": sum(1 for p in result.last_prices if p == final),
                })
                print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
