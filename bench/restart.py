"""A graceful restart (SIGHUP to the master) of an instance holding tens of thousands of streams.

    flock /tmp/pricefeed-bench.lock .venv/bin/python -m bench.restart --clients 20000

One redis-server, the simulator (widget scenario: 10 pairs, 100 trades/s), one pricefeed
instance (2 gevent workers, Redis deployment, conflated pace 1 s). Load generators
(bench/browser_load.py, or bench/node/browsers.mjs with `--generator node`: less CPU
per stream, so more of the 2 cores is left to the server) open the streams at `--ramp`
per second with clients that reconnect like a browser (they honour `retry:` and
`Retry-After`, with jitter, and never give up). Once all are open the parent measures the workers' RSS (RSS per stream
over the idle baseline), sends SIGHUP, and follows the lease (Redis's epoch counter,
every 10 ms) and the clients until `--recovery` seconds later.

Figures: time from the HUP until every client is streaming again (its first event on a
new response), per client close → back, price ages of the age sample during the
recovery, 503s and connect errors the clients saw, the leader handover (HUP → a new
epoch taken), workers' RSS before and after, the load generators' CPU, the load average
before the run. Loopback only; stops by itself.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import gevent  # noqa: E402

from bench.browser_round import (  # noqa: E402
    CHILD_STARTUP_S,
    GENERATORS,
    collect,
    loadavg,
    merge_histograms,
    percentiles,
    pricefeed,
    rss_kb,
    source_ips,
    start_generators,
    workers_of,
)
from bench.fanout_client import raise_open_files_limit  # noqa: E402
from bench.fanout_scenarios import SCENARIOS, SYMBOLS  # noqa: E402
from bench.proc_sampler import _cpu_seconds, _machine_busy_seconds  # noqa: E402
from bench.settings_arg import add_settings_argument, pricefeed_settings  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402

SETTLE_S = 5


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def follow_epoch(redis_server: RedisServer, prefix: str, since: float, until: float, seen: list) -> None:
    before = int(redis_server.client.get(f"{prefix}:epoch") or 0)
    while time.time() < until:
        epoch = int(redis_server.client.get(f"{prefix}:epoch") or 0)
        if epoch != before:
            seen.append(round(time.time() - since, 3))
            return
        gevent.sleep(0.01)


def sample_cpu(app, generators: list[int], until: float, samples: list) -> None:
    """Every 0.25 s: CPU seconds of each gunicorn worker (old and new), of the generators, and the machine's."""
    while time.time() < until:
        workers = {pid: _cpu_seconds(pid) for pid in workers_of(app)}
        samples.append((time.time(), {pid: cpu for pid, cpu in workers.items() if cpu is not None},
                        sum(_cpu_seconds(pid) or 0.0 for pid in generators), _machine_busy_seconds()))
        gevent.sleep(0.25)


def cpu_between(samples: list, start: float, end: float) -> dict:
    """% of one core per group between two sample times. Old workers (alive at `start`): their
    last sample minus their first; new ones (born after it): all of their last sample (boot included)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return {}
    first_workers, span = inside[0][1], inside[-1][0] - inside[0][0]
    last_seen: dict[int, float] = {}
    for _, workers, _, _ in inside:
        last_seen.update(workers)
    old = sum(last_seen[pid] - cpu for pid, cpu in first_workers.items())
    new = sum(cpu for pid, cpu in last_seen.items() if pid not in first_workers)
    return {"seconds": round(span, 1), "new_workers": round(100 * new / span, 1),
            "old_workers": round(100 * old / span, 1),
            "loadgen": round(100 * (inside[-1][2] - inside[0][2]) / span, 1),
            "machine": round(100 * (inside[-1][3] - inside[0][3]) / span, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20000)
    parser.add_argument("--ramp", type=float, default=1000, help="connects per second, all generators")
    parser.add_argument("--recovery", type=float, default=30, help="seconds followed after the HUP")
    parser.add_argument("--sample-every", type=int, default=10)
    parser.add_argument("--connect-timeout", type=float, default=30,
                        help="seconds a client waits for a response head (EventSource itself never gives up; "
                             "the admission gate may hold a newcomer up to NEW_STREAM_MAX_WAIT, 10 s)")
    add_settings_argument(parser, "the server")
    parser.add_argument("--generator", choices=GENERATORS, default="python",
                        help="the load generator: bench/browser_load.py (python) or bench/node/browsers.mjs (node, "
                             "less CPU per stream)")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    if not 0 < args.clients <= 20000 or not 0 < args.recovery <= 60:
        raise SystemExit("clients 1..20,000, recovery at most 60 s")
    raise_open_files_limit()
    scenario = SCENARIOS["widget"]
    load_before = loadavg()
    extra = pricefeed_settings(args.env)
    with RedisServer() as redis_server, SimulatorProcess(pairs=",".join(SYMBOLS), rate=scenario.rate) as sim:
        redis_server.client.config_set("maxclients", 1000)
        with pricefeed(scenario, redis_server, sim, **extra) as (app, prefix):
            old_workers = workers_of(app)
            time.sleep(2)
            idle_kb = {pid: rss_kb(pid) for pid in old_workers}
            idle_fds = {pid: fds(pid) for pid in old_workers}
            start_at = time.time() + CHILD_STARTUP_S
            hup_at = start_at + args.clients / args.ramp + SETTLE_S
            stop_at = hup_at + args.recovery
            spec = {"scenario": "widget", "host": "127.0.0.1", "port": app.port, "clients": args.clients,
                    "ramp_per_s": args.ramp, "start_at": start_at, "window_start": start_at,
                    "window_end": hup_at, "recovery_from": hup_at, "stop_at": stop_at,
                    "source_ips": source_ips(), "connect_timeout": args.connect_timeout,
                    "sample_every": args.sample_every}
            children = start_generators(spec, args.generator)
            collecting = gevent.spawn(collect, children, stop_at + 40)
            gevent.sleep(max(0.0, hup_at - 1 - time.time()))
            loaded_kb = {pid: rss_kb(pid) for pid in old_workers}
            # Each stream holds one file in its worker: the count needs no request to a busy server.
            open_streams = {pid: fds(pid) - idle_fds[pid] for pid in old_workers}
            gevent.sleep(max(0.0, hup_at - time.time()))
            handover: list = []
            following = gevent.spawn(follow_epoch, redis_server, prefix, hup_at, hup_at + 15, handover)
            cpu_samples: list = []
            sampling = gevent.spawn(sample_cpu, app, [c.pid for c in children], stop_at, cpu_samples)
            app.proc.send_signal(signal.SIGHUP)
            results = collecting.get()
            sampling.join(timeout=2)
            following.join(timeout=1)
            new_workers = workers_of(app)
            after_kb = {pid: rss_kb(pid) for pid in new_workers}
            log = app.output()
    ok = [r for r in results if "error" not in r]
    returns = [(closed, back) for r in ok for closed, back in r["returns"]]
    streams = sum(open_streams.values())
    report = {
        "clients": args.clients, "first_connects": sum(len(r["first_connected_at"]) for r in ok),
        "generator": args.generator, "load_avg_before": load_before, "server_env": extra,
        "open_before_hup_by_worker": open_streams,
        "rss": {"idle_kb_by_worker": idle_kb, "loaded_kb_by_worker": loaded_kb,
                "kb_per_stream": round((sum(loaded_kb.values()) - sum(idle_kb.values())) / max(streams, 1), 2),
                "new_workers_kb_at_end": after_kb},
        "leader_handover_s": handover[0] if handover else None,
        "server_closes": sum(r["server_closes"] for r in ok),
        "returned": len(returns),
        "all_back_after_hup_s": round(max(back for _, back in returns) - hup_at, 2) if returns else None,
        "back_after_hup_s": percentiles([back - hup_at for _, back in returns]),
        "closed_after_hup_s": percentiles([closed - hup_at for closed, _ in returns]),
        "close_to_back_s": percentiles([back - closed for closed, back in returns]),
        "refusals": sum((Counter(r["refusals"]) for r in ok), Counter()),
        "refusal_ms": merge_histograms(ok, "refusal_ms"),
        "connect_errors": sum((Counter(r["connect_errors"]) for r in ok), Counter()),
        "not_streaming_at_stop": sum(r["not_streaming_at_stop"] for r in ok),
        "open_at_stop": sum(r["open_at_stop"] for r in ok),
        "age_ms_before_hup": merge_histograms(ok, "ages"),
        "age_ms_recovery": merge_histograms(ok, "recovery_ages"),
        "loadgen_cpu_s": [r["cpu_s"] for r in ok],
        # Where the CPU went from the HUP until every client was back (% of one core).
        "cpu_pct_during_recovery": cpu_between(cpu_samples, hup_at, max((b for _, b in returns), default=stop_at)),
        "spread_log": [line.split("WARNING ")[-1] for line in log.splitlines()
                       if "then closed" in line or "keep-alive connection(s) closed" in line],
        "sigkill_or_graceful_timeout": "SIGKILL" in log or "graceful timeout" in log.lower(),
        "errors": [r["error"] for r in results if "error" in r],
    }
    print(json.dumps(report, indent=1, default=dict))
    if args.json_out:
        with open(args.json_out, "a") as out:
            out.write(json.dumps(report, default=dict) + "\n")


if __name__ == "__main__":
    main()
