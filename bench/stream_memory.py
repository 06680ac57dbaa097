"""What one open stream costs a worker: RSS over the idle baseline and, with tracemalloc, where.

    .venv/bin/python -m bench.stream_memory --clients 1000 [--tracemalloc]

One gunicorn gevent worker (no Redis: one worker, its own exchange connection to the
simulator, 10 pairs at 100 trades/s, conflated pace 1 s), N streams of 3 pairs opened by this
process (gevent, raw sockets, read once a second). Reports the worker's RSS before and with
the streams open, per stream; with `--tracemalloc` (PYTHONTRACEMALLOC=1, slower) also the
Python allocations per stream grouped by source line (bench/tracemalloc_app.py).
Loopback only; bounded (at most 5,000 streams), stops by itself.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from bench.browser_round import rss_kb, workers_of  # noqa: E402
from bench.fanout_client import raise_open_files_limit  # noqa: E402
from bench.fanout_scenarios import PAIRS, SCENARIOS, SYMBOLS, client_pairs, stream_path  # noqa: E402
from tests.support.gunicorn import GunicornProcess  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402


def hold(port: int, path: str, opened: list, stop: float) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        first = sock.recv(65536)
        if not first.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(first[:300])
        opened.append(1)
        while time.time() < stop:
            sock.settimeout(max(0.1, stop - time.time()))
            try:
                if not sock.recv(65536):
                    return
            except TimeoutError:
                return
            gevent.sleep(1)
    finally:
        sock.close()


def one_worker_env(sim: SimulatorProcess, max_clients: int) -> dict[str, str]:
    """One worker without Redis on the simulator's 10 pairs at a 1 s pace, room for `max_clients`
    streams, all of them from the bench's one address (its share of the admission gate: all of
    it); it never sheds (1,000 connects in a second is the bench's doing, not an overload)."""
    return {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url,
            "PRICEFEED_PAIRS": ",".join(PAIRS), "PRICEFEED_MIN_UPDATE_INTERVAL": "1",
            "PRICEFEED_MAX_CLIENTS": str(max_clients), "PRICEFEED_WORKER_CONNECTIONS": str(max_clients + 1000),
            "PRICEFEED_MAX_STREAMS_PER_IP": str(max_clients), "PRICEFEED_NEW_STREAMS_SHARE_PER_IP": "1",
            "PRICEFEED_MAX_PENDING_PER_IP": "0",
            "PRICEFEED_LOG_LEVEL": "WARNING", "PRICEFEED_LAG_BOUND": "30"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--focus", help="with --tracemalloc: full tracebacks of the top growths in files matching this")
    args = parser.parse_args()
    if not 0 < args.clients <= 5000:
        raise SystemExit("clients 1..5,000")
    raise_open_files_limit()
    scenario = SCENARIOS["widget"]
    with SimulatorProcess(pairs=",".join(SYMBOLS), rate=scenario.rate) as sim:
        env = one_worker_env(sim, max_clients=6000)
        if args.tracemalloc:
            env["PYTHONTRACEMALLOC"] = "25" if args.focus else "1"
        with GunicornProcess(workers=1, env=env, app="bench.tracemalloc_app:app") as app:
            wait_until(lambda: app.health()["mode"] == "live", 20, message="live")
            worker = workers_of(app)[0]
            time.sleep(1)
            if args.tracemalloc:
                app.get("/_bench/tracemalloc/baseline", method="POST")
            idle = rss_kb(worker)
            opened: list = []
            stop = time.time() + 60
            holders = []
            for index in range(args.clients):
                holders.append(gevent.spawn(hold, app.port, stream_path("pricefeed", client_pairs(scenario, index)),
                                            opened, stop))
                if index % 200 == 199:
                    gevent.sleep(0.2)
            wait_until(lambda: len(opened) >= args.clients or [g.exception for g in holders if g.dead], 30,
                       message="every stream open")
            failed = [repr(g.exception) for g in holders if g.dead]
            if failed:
                raise SystemExit(f"{len(failed)} streams failed: {failed[:3]}")
            gevent.sleep(3)
            loaded = rss_kb(worker)
            report = {"clients": args.clients, "opened": len(opened), "worker_idle_kb": idle,
                      "worker_loaded_kb": loaded, "rss_kb_per_stream": round((loaded - idle) / len(opened), 2)}
            if args.tracemalloc:
                for group in ("lineno", "filename"):
                    status, body = app.get(f"/_bench/tracemalloc?per={len(opened)}&by={group}", timeout=60)
                    report[f"tracemalloc_by_{group}"] = json.loads(body)
                if args.focus:
                    status, body = app.get(f"/_bench/tracemalloc?per={len(opened)}&by=traceback&focus={args.focus}",
                                           timeout=120)
                    report["focus"] = json.loads(body)
            gevent.killall(holders, block=False)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
