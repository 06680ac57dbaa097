"""The trader scenario past capacity: shed new streams on lag, keep the connected ones on time.

    flock /tmp/pricefeed-bench.lock .venv/bin/python -m bench.overload --reference 3500 --clients 7000

The trader scenario of bench/fanout.py (10 pairs, 20 trades/s, every client on all 10,
every tick), one pricefeed instance (2 gevent workers, Redis deployment), clients from
bench/browser_load.py (or bench/node/browsers.mjs, `--generator node`) that retry a 503
after its Retry-After (plus jitter) as the browser client does. Two rounds, each on a fresh server: `--reference` clients (the largest N
within the 100 ms p99 bound, the "unloaded" figure), then `--clients` offered (2x that).
Per round: clients streaming at the end, 503s and how long each took to arrive (connect()
to the complete head), price ages of the age sample over the window (p50/p90/p99/max),
the workers' lag and shedding counters (/health), CPU of the workers and the load
generators, the load average before. And a probe from this process, lightly loaded
unlike the generators: one new stream request every 0.25 s, timed connect() to head, by
status — the server's own answer time, without the generators' event-loop delays.
Loopback only; each round stops by itself.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import gevent  # noqa: E402

from bench.browser_round import (  # noqa: E402
    CHILD_STARTUP_S,
    GENERATORS,
    collect,
    loadavg,
    merge_histograms,
    pricefeed,
    source_ips,
    start_generators,
    workers_of,
)
from bench.fanout_client import raise_open_files_limit  # noqa: E402
from bench.fanout_scenarios import SCENARIOS, SYMBOLS, client_pairs, stream_path  # noqa: E402
from bench.proc_sampler import ProcessSampler  # noqa: E402
from bench.settings_arg import add_settings_argument, pricefeed_settings  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402

SETTLE_S = 3
PROBE_EVERY_S = 0.25


def probe(port: int, path: str, until: float, seen: list) -> None:
    """From this (lightly loaded) process, not the generators: every PROBE_EVERY_S one new
    stream request, timed from connect() to its complete response head, then closed. The
    generators' own figures include their event loops' delays; this one is the server's."""
    while time.time() < until:
        started = time.time()
        sock = socket.socket()
        try:
            sock.settimeout(10)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                head += chunk
            seen.append((head[9:12].decode(errors="replace") or "closed", (time.time() - started) * 1000))
        except OSError as error:
            seen.append((type(error).__name__, (time.time() - started) * 1000))
        finally:
            sock.close()
        gevent.sleep(max(0.0, started + PROBE_EVERY_S - time.time()))


def probe_figures(seen: list) -> dict:
    """Per status: count and p50 / p99 / max of connect() -> complete head, ms."""
    figures = {}
    for status in sorted({s for s, _ in seen}):
        times = sorted(ms for s, ms in seen if s == status)
        figures[status] = {"n": len(times), "p50": round(times[len(times) // 2], 1),
                           "p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
                           "max": round(times[-1], 1)}
    return figures


def worker_loads(app, tries: int = 8) -> dict:
    """Each worker's lag and shedding counters, as /health reports them (requests land on any worker)."""
    seen = {}
    for _ in range(tries):
        try:
            health = app.health()
        except OSError:
            continue
        seen[health["worker"]["id"]] = {**health["clients"]["load"], "clients": health["clients"]["clients"]}
    return seen


def run_round(clients: int, args, redis_server: RedisServer, sim: SimulatorProcess, settings: list[str]) -> dict:
    scenario = SCENARIOS["trader"]
    load_before = loadavg()
    with pricefeed(scenario, redis_server, sim, **pricefeed_settings(settings)) as (app, _):
        start_at = time.time() + CHILD_STARTUP_S
        window_start = start_at + clients / args.ramp + SETTLE_S
        window_end = window_start + args.duration
        spec = {"scenario": "trader", "host": "127.0.0.1", "port": app.port, "clients": clients,
                "ramp_per_s": args.ramp, "start_at": start_at, "window_start": window_start,
                "window_end": window_end, "stop_at": window_end + 1, "source_ips": source_ips(),
                "connect_timeout": 10, "sample_every": args.sample_every}
        children = start_generators(spec, args.generator)
        sampler = ProcessSampler(lambda: {"workers": workers_of(app), "loadgen": [c.pid for c in children]},
                                 redis_server.client)
        sampler.sample()
        sampling = gevent.spawn(sampler.run, window_end + 1)
        collecting = gevent.spawn(collect, children, window_end + 60)
        probed: list = []
        probing = gevent.spawn(probe, app.port, stream_path("pricefeed", client_pairs(scenario, 0)), window_end, probed)
        gevent.sleep(max(0.0, window_end - 2 - time.time()))
        loads = worker_loads(app)
        results = collecting.get()
        probing.join()
        sampling.join()
    ok = [r for r in results if "error" not in r]
    cpu, machine = sampler.cpu_percent(window_start, window_end)
    return {
        "offered": clients, "generator": args.generator, "settings": settings, "load_avg_before": load_before, "window_s": args.duration,
        "streaming_at_end": sum(r["open_at_stop"] for r in ok),
        "refusals": dict(sum((Counter(r["refusals"]) for r in ok), Counter())),
        "refusal_ms": merge_histograms(ok, "refusal_ms"),
        "connect_errors": dict(sum((Counter(r["connect_errors"]) for r in ok), Counter())),
        "server_closes": sum(r["server_closes"] for r in ok),
        "age_ms": merge_histograms(ok, "ages"),
        "probe_ms": probe_figures(probed),
        "events_per_s": round(sum(r["window_events"] for r in ok) / args.duration),
        "workers_load": loads,
        "cpu_pct": cpu, "machine_busy_pct": machine,
        "loadgen_cpu_s": [r["cpu_s"] for r in ok],
        "errors": [r["error"] for r in results if "error" in r],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=int, default=3500, help="clients of the unloaded round (0: skip)")
    parser.add_argument("--clients", type=int, default=7000, help="clients offered in the overloaded round")
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--ramp", type=float, default=1000)
    parser.add_argument("--sample-every", type=int, default=10)
    add_settings_argument(parser, "the overloaded round's server")
    parser.add_argument("--generator", choices=GENERATORS, default="python",
                        help="the load generator: bench/browser_load.py (python) or bench/node/browsers.mjs (node, "
                             "less CPU per stream)")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    if not 0 < args.clients <= 20000 or not 0 <= args.reference <= 20000 or not 0 < args.duration <= 120:
        raise SystemExit("clients 1..20,000, duration at most 120 s")
    raise_open_files_limit()
    rounds = []
    with RedisServer() as redis_server, SimulatorProcess(pairs=",".join(SYMBOLS), rate=SCENARIOS["trader"].rate) as sim:
        # The reference is the unloaded figure: the stock settings, which do not shed at that N.
        for clients, settings in ([(args.reference, [])] if args.reference else []) + [(args.clients, args.env)]:
            row = run_round(clients, args, redis_server, sim, settings)
            rounds.append(row)
            print(json.dumps(row), flush=True)
            if args.json_out:
                with open(args.json_out, "a") as out:
                    out.write(json.dumps(row) + "\n")
    if len(rounds) == 2:
        reference, loaded = rounds[0]["age_ms"]["p99"], rounds[1]["age_ms"]["p99"]
        print(f"p99 {reference} ms at {args.reference:,} (reference) -> {loaded} ms with {args.clients:,} offered "
              f"({rounds[1]['streaming_at_end']:,} streaming); refusals answered in p99 "
              f"{rounds[1]['refusal_ms']['p99']} ms, max {rounds[1]['refusal_ms']['max']} ms")


if __name__ == "__main__":
    main()
