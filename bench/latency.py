"""Exchange-to-client latency with N SSE clients on one gunicorn worker.

    .venv/bin/python -m bench.latency --clients 100 --duration 30 --rate 20

Starts the simulator (the exchange) and gunicorn on loopback, opens N streams on
all pairs, and reports the price age at receipt: receipt time − the exchange
event time `ts` stamped by the simulator when it generated the trade (one
machine, one clock). Stops by itself.
"""
from __future__ import annotations

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from bench.sse_load import percentile, run_load  # noqa: I001 - patches gevent first
from tests.support.deployment import ONE_ADDRESS_LOAD  # noqa: E402
from tests.support.gunicorn import GunicornProcess  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

PAIRS = "BTC/USD,ETH/USD,SOL/USD,BNB/USD,XRP/USD"
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--rate", type=float, default=20, help="exchange trades per second, all pairs")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    with SimulatorProcess(pairs=SYMBOLS, rate=args.rate) as sim, \
            GunicornProcess(workers=args.workers, env={
                "PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": PAIRS,
                "PRICEFEED_MAX_CLIENTS": str(args.clients + 100), "PRICEFEED_LOG_LEVEL": "WARNING",
                **ONE_ADDRESS_LOAD}) as app:
        wait_until(lambda: app.health()["mode"] == "live", 20, message="live")
        started = time.time()
        # The exchange goes quiet 2 s before the clients stop, so every client can be
        # checked against the exchange's final prices.
        ramp = args.clients / 500
        gevent.spawn_later(ramp + args.duration - 2, sim.market, paused=True)
        result = run_load(f"{app.url}/api/market-data/stream?pairs={PAIRS}", args.clients, args.duration)
        elapsed = time.time() - started
        final = {pair: sim.prices()[symbol]["price"] for pair, symbol in zip(PAIRS.split(","), SYMBOLS.split(","), strict=True)}
    converged = sum(1 for prices in result.last_prices if prices == final)
    report = {
        "clients": args.clients, "workers": args.workers, "rate": args.rate, "duration_s": round(elapsed, 1),
        "connected": result.connected, "connect_failures": result.connect_failures,
        "disconnects": result.disconnects, "events": result.events,
        "events_per_s": round(result.events / elapsed),
        "age_ms_p50": round(percentile(result.ages_ms, 0.50), 1),
        "age_ms_p90": round(percentile(result.ages_ms, 0.90), 1),
        "age_ms_p99": round(percentile(result.ages_ms, 0.99), 1),
        "age_ms_max": round(max(result.ages_ms, default=float("nan")), 1),
        "clients_holding_final_prices": f"{converged}/{args.clients}",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
