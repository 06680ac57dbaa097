"""How long a /metrics scrape takes while one instance streams to tens of thousands of browsers.

    flock /tmp/pricefeed-bench.lock .venv/bin/python -m bench.metrics_scrape --clients 20000 --scrapes 20

The fan-out benchmark's widget scenario (bench/fanout.py: 10 pairs, 100 ticks/s, 3
pairs per client, MIN_UPDATE_INTERVAL 1 s), against pricefeed only: one
redis-server, one simulator, `gunicorn -c gunicorn.conf.py app:app` with 2 gevent
workers (so metrics run multiprocess, as in production), and the fan-out load
generators holding N streams. Once every stream is counted by the scrape itself
(`pricefeed_clients`), it times `--scrapes` scrapes, one per `--interval` seconds,
each from connect to the last byte, then lets the generators stop. Prints one JSON
object: scrape times (p50, max, each), streams open, connect failures, CPU of the
servers and of the load generators, and the load average before the run.
Loopback only; stops by itself.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import gevent  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.fanout import (  # noqa: E402
    CHILD_STARTUP_S,
    MAX_CLIENTS_PER_GENERATOR,
    PAUSE_S,
    ROOT,
    SERVER_GROUPS,
    SETTLE_S,
    _collect,
    _raise_redis_maxclients,
    serve_pricefeed,
)
from bench.fanout_client import raise_open_files_limit  # noqa: E402
from bench.fanout_scenarios import SCENARIOS, SYMBOLS  # noqa: E402
from bench.proc_sampler import ProcessSampler  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402

METRICS = "/api/market-data/metrics"
MAX_CLIENTS = 40_000
SCRAPE_TIMEOUT_S = 10.0
WAIT_FOR_STREAMS_S = 45     # at most, after the ramp, for every stream to be counted


def timed_scrape(port: int) -> tuple[float, str, float]:
    """Seconds from connect to the last byte of one scrape, its text, and the seconds the worker
    spent building it (its Server-Timing header)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT_S)
    try:
        connection.request("GET", METRICS)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"/metrics answered {response.status}: {body[:200]!r}")
        built_ms = float((response.getheader("Server-Timing") or "dur=nan").rpartition("dur=")[2])
    finally:
        connection.close()
    return time.perf_counter() - started, body.decode(), built_ms / 1000


def streams_counted(text: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "pricefeed_clients" for sample in family.samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20_000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ramp", type=float, default=1000, help="connects per second, all generators together")
    parser.add_argument("--source-ips", type=int, default=8)
    args = parser.parse_args()
    if not 0 < args.clients <= MAX_CLIENTS or not 0 < args.scrapes <= 200 or not 0.1 <= args.interval <= 10:
        raise SystemExit(f"clients 1..{MAX_CLIENTS:,}, scrapes 1..200, interval 0.1..10 s")
    loadavg_before = open("/proc/loadavg").read().split()[:3]
    open_files = raise_open_files_limit()
    if open_files < min(args.clients, MAX_CLIENTS_PER_GENERATOR) + 1000:
        raise SystemExit(f"the open-files limit is {open_files}: raise the hard limit (ulimit -Hn)")
    scenario = SCENARIOS["widget"]
    generators = max(2, math.ceil(args.clients / MAX_CLIENTS_PER_GENERATOR))
    ramp_s = args.clients / args.ramp
    # Room for every stream to be counted, then the scrapes.
    window_s = WAIT_FOR_STREAMS_S + args.scrapes * args.interval
    with RedisServer() as redis_server, SimulatorProcess(pairs=",".join(SYMBOLS), rate=scenario.rate) as sim:
        _raise_redis_maxclients(redis_server)
        with serve_pricefeed(scenario, args.workers, redis_server, sim) as server:
            start_at = time.time() + CHILD_STARTUP_S
            window_start = start_at + ramp_s + SETTLE_S
            window_end = window_start + window_s
            stop_at = window_end + PAUSE_S
            spec = {"target": "pricefeed", "scenario": scenario.name, "host": "127.0.0.1", "port": server.port,
                    "clients": args.clients, "step": generators, "ramp_per_s": args.ramp, "start_at": start_at,
                    "window_start": window_start, "window_end": window_end, "stop_at": stop_at,
                    "source_ips": [f"127.0.0.{2 + i}" for i in range(args.source_ips)],
                    "connect_timeout": 10, "sample_every": 100}
            children = [subprocess.Popen([sys.executable, "-m", "bench.fanout_client",
                                          json.dumps({**spec, "first": k})], cwd=ROOT, stdout=subprocess.PIPE)
                        for k in range(generators)]
            sampler = ProcessSampler(lambda: {**server.groups(), "redis": [redis_server.proc.pid],
                                              "exchange": [sim.proc.pid], "loadgen": [c.pid for c in children]},
                                     redis_server.client)
            sampler.sample()
            sampling = gevent.spawn(sampler.run, stop_at + 1)
            collecting = [gevent.spawn(_collect, child, stop_at + 40) for child in children]
            gevent.sleep(max(0.0, window_start - time.time()))
            # Every stream counted, or as many as connected once the count stops growing (reported).
            counted, steady_since, deadline = 0.0, time.time(), time.time() + WAIT_FOR_STREAMS_S
            while counted < args.clients and time.time() < deadline and time.time() - steady_since < 5:
                try:
                    now_counted = streams_counted(timed_scrape(server.port)[1])
                except OSError:       # a worker still swamped by the connect storm: ask again
                    continue
                if now_counted != counted:
                    counted, steady_since = now_counted, time.time()
                gevent.sleep(0.5)
            streams_before = counted
            times, built, failed, scrape_start = [], [], [], time.time()
            for _ in range(args.scrapes):
                next_at = time.perf_counter() + args.interval
                try:
                    seconds, text, built_s = timed_scrape(server.port)
                except OSError as error:   # counted as a failed scrape, at its timeout
                    failed.append(repr(error))
                    times.append(SCRAPE_TIMEOUT_S)
                else:
                    times.append(seconds)
                    built.append(built_s)
                    counted = streams_counted(text)
                gevent.sleep(max(0.0, next_at - time.perf_counter()))
            scrape_end = time.time()
            gevent.joinall(collecting + [sampling])
            results = [g.value or {"error": repr(g.exception)} for g in collecting]
    ok = [r for r in results if "error" not in r]
    cpu, machine = sampler.cpu_percent(scrape_start, scrape_end)
    report = {
        "clients": args.clients, "workers": args.workers, "scenario": scenario.name,
        "streams_in_first_scrape": streams_before, "streams_in_last_scrape": counted,
        "connected": sum(r["connected"] for r in ok),
        "connect_failures": sum(sum(r["connect_failures"].values()) for r in ok),
        "connect_failure_reasons": dict(sum((Counter(r["connect_failures"]) for r in ok), Counter())),
        "disconnects": sum(sum(r["disconnects"].values()) for r in ok),
        "scrape_ms": {"p50": round(statistics.median(times) * 1000, 1), "max": round(max(times) * 1000, 1),
                      "each": [round(t * 1000, 1) for t in times]},
        "scrapes_failed": failed,
        "built_in_worker_ms": {"p50": round(statistics.median(built) * 1000, 1),
                               "max": round(max(built) * 1000, 1)} if built else None,
        "server_cpu_pct": round(sum(cpu.get(g, 0) for g in SERVER_GROUPS), 1),
        "loadgen_cpu_pct": round(cpu.get("loadgen", 0), 1), "cpu_pct": cpu, "machine_busy_pct": machine,
        "loadavg_before": loadavg_before,
    }
    if len(ok) < len(results):
        report["load_generator_errors"] = [r["error"] for r in results if "error" in r]
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
