"""Fan-out at scale: pricefeed against Flask-SSE with up to tens of thousands of SSE clients.

    .venv/bin/python -m bench.fanout --target both --scenario widget --clients 1000,5000 --duration 60
    .venv/bin/python -m bench.fanout --target pricefeed --transport ws --scenario trader --clients 1000,5000
    .venv/bin/python -m bench.fanout --target pricefeed --scenario mixed --clients 20000

One redis-server and one simulator (10 pairs, at the scenario's fixed tick rate)
for the whole run; for every N, and for every target in turn, a fresh server:
pricefeed (gunicorn gevent, Redis deployment) or Flask-SSE (bench/flask_sse_app.py
under gunicorn gevent, fed by bench/flask_sse_bridge.py). K load-generator
processes (bench/fanout_client.py) open N streams from source addresses
127.0.0.2... round-robin at a bounded connect rate and hold them for `--duration`
seconds after the ramp (the measured window); then the exchange pauses, and 3 s
later the clients stop and are compared with the exchange's final prices. About
one client in ten (`--sample-every`) reads every chunk as it arrives and records
the price age of each event; the others read every 0.25 s, which costs the load
generator far less CPU on a machine it shares with the servers.
Meanwhile the parent samples CPU seconds and RSS of every server process, the
load generators and the exchange from /proc, and Redis's `INFO clients`.

Output: one JSON object per (target, scenario, N) as it finishes, then a
markdown table and the largest N each target served within the p99 bound. `--transport ws`
holds pricefeed's WebSocket instead of SSE; the `mixed` scenario runs two client groups
with their own `interval` on one deployment and reports each group's figures beside the totals.
bench/README.md says what every figure means. Loopback only; stops by itself.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

from bench.fanout_client import BATCH_READ_S, raise_open_files_limit  # noqa: E402
from bench.fanout_scenarios import PAIRS, SCENARIOS, SYMBOLS, Scenario, client_group, flask_sse_channels  # noqa: E402
from bench.proc_sampler import ProcessSampler, children_of, softirq_threads  # noqa: E402
from bench.settings_arg import add_settings_argument, pricefeed_settings  # noqa: E402
from bench.stock_server import STOCK_PREFIX, stock_pricefeed  # noqa: E402
from pricefeed.settings.delivery import DeliverySettings  # noqa: E402
from tests.support.deployment import all_live, instance_env, new_prefix  # noqa: E402
from tests.support.gunicorn import GunicornProcess  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402
from tests.support.waiting import free_port, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# bare: bench/bare_broadcast.py, the delivery anchor; bare-matched: the same with the socket options
# pricefeed's streams have (TCP_NODELAY from gunicorn's listener, SO_SNDBUF as PRICEFEED_STREAM_SEND_BUFFER).
TARGETS = ("pricefeed", "flask-sse", "bare", "bare-matched")
WORKER_CONNECTIONS = 12000           # per gunicorn worker, both targets
PRICEFEED_MAX_CLIENTS = 12000        # per worker
MAX_CLIENTS_PER_GENERATOR = 10_000   # each process may open 20,000 files
MAX_CLIENTS = 40_000                 # a bound on any one round
CHILD_STARTUP_S = 3                  # load generators import and wait for the common start
SETTLE_S = 2                         # after the last connect, before the window opens
PAUSE_S = 3                          # the exchange is quiet this long before the clients stop
CONNECT_TIMEOUT_S = 10               # default: from connect() to a complete response head
SERVER_GROUPS = ("master", "workers", "bridge", "redis")


# -- the servers -----------------------------------------------------------------------------

@dataclass
class Server:
    port: int
    groups: Callable[[], dict[str, list[int]]]   # server processes by group
    epoch: Callable[[], int | None]              # pricefeed's lease epoch counter
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def serve_pricefeed(scenario: Scenario, workers: int, redis_server: RedisServer,
                    sim: SimulatorProcess, settings: dict[str, str] | None = None) -> Iterator[Server]:
    prefix = new_prefix()
    env = instance_env(sim, redis_server.url, prefix, PRICEFEED_PAIRS=",".join(PAIRS),
                       PRICEFEED_MAX_CLIENTS=str(PRICEFEED_MAX_CLIENTS),
                       PRICEFEED_WORKER_CONNECTIONS=str(WORKER_CONNECTIONS),
                       PRICEFEED_MIN_UPDATE_INTERVAL=f"{scenario.min_update_interval:g}",
                       PRICEFEED_LOG_LEVEL="WARNING",
                       PRICEFEED_HEARTBEAT_INTERVAL="15")   # the production default, not the tests' 1 s
    env.update(settings or {})
    with GunicornProcess(workers=workers, env=env) as app:
        all_live([app])
        master = app.proc.pid
        yield Server(app.port, lambda: {"master": [master], "workers": children_of(master)},
                     lambda: int(redis_server.client.get(f"{prefix}:epoch") or 0))


@contextmanager
def serve_stock_pricefeed(scenario: Scenario, redis_server: RedisServer, sim: SimulatorProcess,
                          settings: dict[str, str] | None = None) -> Iterator[Server]:
    """`./run.sh` with no capacity settings (bench/stock_server.py); /health's `capacity` goes in the report."""
    redis_server.client.delete(f"{STOCK_PREFIX}:lease")   # a previous round's leader, if any
    with stock_pricefeed(redis_server.url, ",".join(PAIRS), scenario.min_update_interval, sim.ws_url,
                         sim.http_url, settings) as app:
        master = app.proc.pid
        yield Server(app.port, lambda: {"master": [master], "workers": children_of(master)},
                     lambda: int(redis_server.client.get(f"{STOCK_PREFIX}:epoch") or 0),
                     {"stock": True, "capacity": app.health()["capacity"]})


def _answers(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    finally:
        connection.close()


@contextmanager
def serve_bare(workers: int, sim: SimulatorProcess, options: tuple[str, ...] = ()) -> Iterator[Server]:
    """bench/bare_broadcast.py: `workers` forked gevent processes, each reading the exchange itself."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare_broadcast", "--port", str(port), "--upstream",
                             sim.ws_url, "--pairs", ",".join(PAIRS), "--workers", str(workers), *options], cwd=ROOT)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"bench.bare_broadcast exited with {proc.returncode}")
            return len(children_of(proc.pid)) == workers
        wait_until(ready, 20, message="the bare broadcast's workers")
        yield Server(port, lambda: {"master": [proc.pid], "workers": children_of(proc.pid)}, lambda: None)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def serve_flask_sse(scenario: Scenario, workers: int, redis_server: RedisServer, sim: SimulatorProcess,
                    publish: str, max_seconds: float) -> Iterator[Server]:
    # Imported here: flask-sse (requirements-bench.txt) is not needed for the other targets.
    from bench.flask_sse_app import FlaskSSEServer
    from bench.flask_sse_bridge import BridgeProcess
    port = free_port()
    with FlaskSSEServer(port, redis_server.url, workers, WORKER_CONNECTIONS) as app:
        master = app.proc.pid

        def ready() -> bool:
            if app.proc.poll() is not None:
                raise RuntimeError(f"Flask-SSE's gunicorn exited:\n{app.output()}")
            return len(children_of(master)) == workers and _answers(port, "/health")
        wait_until(ready, 20, message="Flask-SSE's gunicorn")
        with BridgeProcess(sim.ws_url, redis_server.url, flask_sse_channels(scenario), max_seconds,
                           publish) as bridge:
            server = Server(port, lambda: {"master": [master], "workers": children_of(master),
                                           "bridge": [bridge.proc.pid]}, lambda: None)
            yield server
        server.extra["bridge"] = {**bridge.counts, "publish": publish}


# -- one round ---------------------------------------------------------------------------------

def _percentile(histogram: Counter[int], total: int, fraction: float) -> int | None:
    """Nearest rank: the smallest age at or below which `fraction` of the events fall."""
    if not total:
        return None
    rank, seen = math.ceil(fraction * total), 0
    for age in sorted(histogram):
        seen += histogram[age]
        if seen >= rank:
            return age
    return None


def _collect(child: subprocess.Popen, deadline: float) -> dict[str, Any]:
    try:
        out, _ = child.communicate(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return {"error": "load generator overran its deadline"}
    lines = out.decode(errors="replace").strip().splitlines()
    if child.returncode != 0 or not lines:
        return {"error": f"load generator exited with {child.returncode}"}
    return json.loads(lines[-1])


def run_round(target: str, scenario: Scenario, clients: int, args: argparse.Namespace,
              redis_server: RedisServer, sim: SimulatorProcess) -> dict[str, Any]:
    generators = max(args.generators, math.ceil(clients / MAX_CLIENTS_PER_GENERATOR))
    ramp_s = clients / args.ramp
    round_s = CHILD_STARTUP_S + ramp_s + SETTLE_S + args.duration + PAUSE_S
    sim.market(paused=False)
    settings = pricefeed_settings(args.env)
    if target == "pricefeed" and args.stock:
        serving = serve_stock_pricefeed(scenario, redis_server, sim, settings)
    elif target == "pricefeed":
        serving = serve_pricefeed(scenario, args.workers, redis_server, sim, settings)
    elif target == "bare":
        serving = serve_bare(args.workers, sim)
    elif target == "bare-matched":
        serving = serve_bare(args.workers, sim, ("--nodelay", "--sndbuf", str(DeliverySettings().stream_send_buffer)))
    else:
        serving = serve_flask_sse(scenario, args.workers, redis_server, sim, args.bridge_publish,
                                  max_seconds=round_s + 60)
    with serving as server:
        epoch_before = server.epoch()
        start_at = time.time() + CHILD_STARTUP_S
        window_start = start_at + ramp_s + SETTLE_S
        window_end = window_start + args.duration
        stop_at = window_end + PAUSE_S
        spec = {"target": target, "scenario": scenario.name, "host": "127.0.0.1", "port": server.port,
                "clients": clients, "step": generators, "ramp_per_s": args.ramp, "start_at": start_at,
                "window_start": window_start, "window_end": window_end, "stop_at": stop_at,
                "source_ips": [f"127.0.0.{2 + i}" for i in range(args.source_ips)],
                "connect_timeout": args.connect_timeout, "sample_every": args.sample_every,
                "transport": args.transport}
        children = [subprocess.Popen([sys.executable, "-m", "bench.fanout_client",
                                      json.dumps({**spec, "first": k})], cwd=ROOT, stdout=subprocess.PIPE)
                    for k in range(generators)]
        softirq = softirq_threads()
        if not softirq:
            print("fanout: no ksoftirqd threads visible in /proc (a PID namespace?): "
                  "server_and_softirq_us_per_event is the servers' own CPU alone", file=sys.stderr)
        sampler = ProcessSampler(lambda: {**server.groups(), "redis": [redis_server.proc.pid],
                                          "exchange": [sim.proc.pid], "loadgen": [c.pid for c in children],
                                          "softirq": softirq},
                                 redis_server.client)
        sampler.sample()   # the baseline, before the first client connects
        sampling = gevent.spawn(sampler.run, stop_at + 1)
        pausing = gevent.spawn_later(max(0.0, window_end - time.time()), sim.market, paused=True)
        collecting = [gevent.spawn(_collect, child, stop_at + args.connect_timeout + 30) for child in children]
        everything: list[gevent.Greenlet] = [*collecting, pausing, sampling]
        gevent.joinall(everything)
        results = [g.value or {"error": repr(g.exception)} for g in collecting]
        epoch_after = server.epoch()
        exchange = sim.prices()
        final = {pair: exchange[symbol]["price"] for pair, symbol in zip(PAIRS, SYMBOLS, strict=True)}
    return _report(target, scenario, clients, generators, args, server, sampler, results, final,
                   (start_at, window_start, window_end, stop_at), epoch_before, epoch_after)


def _report(target: str, scenario: Scenario, clients: int, generators: int, args: argparse.Namespace,
            server: Server, sampler: ProcessSampler, results: list[dict[str, Any]], final: dict[str, str],
            times: tuple[float, float, float, float], epoch_before: int | None,
            epoch_after: int | None) -> dict[str, Any]:
    start_at, window_start, window_end, stop_at = times
    window = window_end - window_start
    ok = [r for r in results if "error" not in r]
    ages: Counter[int] = Counter()
    endings: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    disconnects: Counter[str] = Counter()
    for result in ok:
        ages.update({int(age): count for age, count in result["ages"].items()})
        endings.update(result["endings"])
        failures.update(result["connect_failures"])
        disconnects.update(result["disconnects"])
    samples = sum(ages.values())
    converged = sum(count for ending, count in endings.items()
                    if all(price == final[pair] for pair, price in zip(*json.loads(ending), strict=True)))
    cpu, machine = sampler.cpu_percent(window_start, window_end)
    cpu_run, _ = sampler.cpu_percent(start_at, stop_at)
    during = sampler.between(start_at, stop_at) or sampler.samples
    baseline = sampler.samples[0]
    server_rss = [sum(s.rss.get(g, 0) for g in SERVER_GROUPS) for s in during]
    baseline_rss = sum(baseline.rss.get(g, 0) for g in SERVER_GROUPS)
    connected = sum(r["connected"] for r in ok)
    redis_clients = [s.redis_clients for s in sampler.between(window_start + 1, window_end - 1)
                     if s.redis_clients is not None]
    loadgen_pct = [round(100 * r["window_cpu_s"] / window, 1) for r in ok]
    age = {"p50": _percentile(ages, samples, 0.50), "p90": _percentile(ages, samples, 0.90),
           "p99": _percentile(ages, samples, 0.99),
           "max": max((r["age_max"] for r in ok), default=None), "events": samples}
    report = {
        "target": target, "settings": args.env if target == "pricefeed" else [],
        "transport": args.transport if target == "pricefeed" else "sse",
        "scenario": scenario.name, "clients": clients, "tick_rate": scenario.rate,
        "pairs_per_client": scenario.pairs_per_client, "workers": args.workers, "generators": generators,
        "source_ips": args.source_ips, "ramp_per_s": args.ramp, "connect_timeout_s": args.connect_timeout,
        "age_sample_every": args.sample_every,
        "window_s": round(window, 1),
        "connected": connected, "open_at_stop": sum(r["open_at_stop"] for r in ok),
        "connect_failures": sum(failures.values()), "connect_failure_reasons": dict(failures),
        "disconnects": sum(disconnects.values()), "disconnect_reasons": dict(disconnects),
        "events_per_s": round(sum(r["window_events"] for r in ok) / window),
        "events_per_client_per_s": round(sum(r["window_events"] for r in ok) / window / max(connected, 1), 2),
        "age_ms": age,
        "converged": converged, "converged_all": converged == clients,
        "server_cpu_pct": round(sum(cpu.get(g, 0) for g in SERVER_GROUPS), 1), "cpu_pct": cpu,
        # Server CPU (workers, master, bridge, redis) per price event the clients received.
        "server_us_per_event": round(sum(cpu.get(g, 0) for g in SERVER_GROUPS) / 100 * 1e6
                                     / max(1, sum(r["window_events"] for r in ok) / window), 2),
        "workers_us_per_event": round(cpu.get("workers", 0) / 100 * 1e6
                                      / max(1, sum(r["window_events"] for r in ok) / window), 2),
        # The same with the kernel's softirq threads (proc_sampler.softirq_threads): network work
        # a server's sends caused but no process was charged for. Busy loopback senders differ in
        # how much of it the kernel defers there, so servers compare fairly only with it counted.
        # Those threads also carry softirq work the servers did not cause (the generators'
        # side, timers): about the same for every target, and small beside it.
        "server_and_softirq_us_per_event": round(
            sum(cpu.get(g, 0) for g in (*SERVER_GROUPS, "softirq")) / 100 * 1e6
            / max(1, sum(r["window_events"] for r in ok) / window), 2),
        "server_cpu_pct_run": round(sum(cpu_run.get(g, 0) for g in SERVER_GROUPS), 1),
        "workers_window": sampler.per_worker(window_start, window_end),
        "machine_busy_pct": machine,
        "loadgen_cpu_s": round(sum(r["cpu_s"] for r in ok), 1), "loadgen_window_cpu_pct": loadgen_pct,
        "rss_mb": {"server_peak": round(max(server_rss, default=0) / 2**20, 1),
                   "server_baseline": round(baseline_rss / 2**20, 1),
                   "peak_by_group": {g: round(max(s.rss.get(g, 0) for s in during) / 2**20, 1)
                                     for g in baseline.rss}},
        "rss_kb_per_client": round((max(server_rss, default=0) - baseline_rss) / 1024 / max(connected, 1), 1),
        "redis_clients": {"min": min(redis_clients, default=None), "max": max(redis_clients, default=None)},
        "fds_max": {g: sorted(per_pid.values(), reverse=True) for g, per_pid in sampler.fds_max.items()},
        "loadgen_fds_at_window_end": [r.get("fds_at_window_end") for r in ok],
        "worker_restarts": max(0, len(sampler.pids_seen.get("workers", ())) - args.workers),
        "leadership_changes": None if epoch_before is None or epoch_after is None else epoch_after - epoch_before,
        **server.extra,
        "p99_bound_ms": scenario.p99_bound_ms,
    }
    if len(ok) < len(results):
        report["load_generator_errors"] = [r["error"] for r in results if "error" in r]
    report["within_bound"] = (not report.get("load_generator_errors") and age["p99"] is not None
                              and age["p99"] <= scenario.p99_bound_ms and report["connect_failures"] == 0
                              and report["disconnects"] == 0 and report["converged_all"])
    if scenario.groups:
        report["groups"] = _group_reports(scenario, clients, ok, final, window)
        report["within_bound"] = (not report.get("load_generator_errors")
                                  and all(g["within_bound"] for g in report["groups"].values()))
    return report


def _group_reports(scenario: Scenario, clients: int, ok: list[dict[str, Any]], final: dict[str, str],
                   window: float) -> dict[str, Any]:
    """Each client group's own figures (a mixed scenario), from the generators' per-group totals."""
    reports = {}
    for group in scenario.groups:
        members = sum(1 for index in range(clients) if client_group(scenario, index).name == group.name)
        parts = [r["groups"][group.name] for r in ok if group.name in r.get("groups", {})]
        ages: Counter[int] = Counter()
        endings: Counter[str] = Counter()
        for part in parts:
            ages.update({int(age): count for age, count in part["ages"].items()})
            endings.update(part["endings"])
        samples = sum(ages.values())
        connected = sum(p["connected"] for p in parts)
        window_events = sum(p["window_events"] for p in parts)
        converged = sum(count for ending, count in endings.items()
                        if all(price == final[pair] for pair, price in zip(*json.loads(ending), strict=True)))
        age = {"p50": _percentile(ages, samples, 0.50), "p90": _percentile(ages, samples, 0.90),
               "p99": _percentile(ages, samples, 0.99), "max": max((p["age_max"] for p in parts), default=None),
               "events": samples}
        failures = sum(sum(p["connect_failures"].values()) for p in parts)
        disconnects = sum(sum(p["disconnects"].values()) for p in parts)
        reports[group.name] = {
            "clients": members, "interval_ms": group.interval_ms, "pairs_per_client": group.pairs_per_client,
            "connected": connected, "connect_failures": failures, "disconnects": disconnects,
            "events_per_s": round(window_events / window),
            "events_per_client_per_s": round(window_events / window / max(connected, 1), 2),
            "age_ms": age, "converged": converged, "p99_bound_ms": group.p99_bound_ms,
            "not_converged_examples": [
                {pair: price for pair, price in zip(*json.loads(ending), strict=True) if price != final[pair]}
                for ending in endings
                if not all(price == final[pair] for pair, price in zip(*json.loads(ending), strict=True))][:3],
            "final": final,
            "within_bound": (age["p99"] is not None and age["p99"] <= group.p99_bound_ms and failures == 0
                             and disconnects == 0 and converged == members),
        }
    return reports


# -- output --------------------------------------------------------------------------------

TABLE_HEADER = (
    "| target | N | connected | connect failures | disconnects | events/s | "
    "age p50 / p90 / p99 / max (ms) | final prices | server CPU % | server µs/event (with softirq threads) | peak RSS MB (KB/client) | "
    "Redis conns | load-gen CPU % | leader changes | within p99 bound |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['target']} | {r['clients']:,} | error: {r['error']} |"
    a, redis_clients = r["age_ms"], r["redis_clients"]
    target = r["target"] + (" (WebSocket)" if r.get("transport") == "ws" else "")
    row = (f"| {target} | {r['clients']:,} | {r['connected']:,} | {r['connect_failures']} | "
            f"{r['disconnects']} | {r['events_per_s']:,} | {a['p50']} / {a['p90']} / {a['p99']} / {a['max']} | "
            f"{r['converged']:,}/{r['clients']:,} | {r['server_cpu_pct']} | {r.get('server_us_per_event')} "
            f"({r.get('server_and_softirq_us_per_event')}) | "
            f"{r['rss_mb']['server_peak']} ({r['rss_kb_per_client']}) | "
            f"{redis_clients['min']}–{redis_clients['max']} | "
            f"{' + '.join(str(p) for p in r['loadgen_window_cpu_pct'])} | "
            f"{'—' if r['leadership_changes'] is None else r['leadership_changes']} | "
            f"{'yes' if r['within_bound'] else 'no'} |")
    for name, g in (r.get("groups") or {}).items():
        a = g["age_ms"]
        row += (f"\n| ↳ {name} (interval {g['interval_ms']} ms, {g['pairs_per_client']} pairs) | {g['clients']:,} | "
                f"{g['connected']:,} | {g['connect_failures']} | {g['disconnects']} | {g['events_per_s']:,} "
                f"({g['events_per_client_per_s']}/client) | {a['p50']} / {a['p90']} / {a['p99']} / {a['max']} | "
                f"{g['converged']:,}/{g['clients']:,} | | | | | | | {'yes' if g['within_bound'] else 'no'} |")
    return row


def _raise_redis_maxclients(redis_server: RedisServer) -> int:
    """As many clients as redis-server's file limit allows (it keeps 32 files for itself), not its default 10,000."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]   # redis-server inherited ours
    try:
        redis_server.client.config_set("maxclients", limit - 32)
    except redis.ResponseError:
        pass
    maxclients = redis_server.client.config_get("maxclients")["maxclients"]
    assert maxclients is not None
    return int(maxclients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="both",
                        help=f"comma-separated, of {', '.join(TARGETS)}; both: pricefeed,flask-sse "
                             f"(bare: bench/bare_broadcast.py, the delivery anchor)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="widget")
    parser.add_argument("--clients", default="1000", help="comma-separated client counts, e.g. 1000,5000,10000,20000")
    parser.add_argument("--duration", type=float, default=60, help="seconds measured after the ramp, per round")
    parser.add_argument("--generators", type=int, default=2,
                        help=f"load-generator processes (raised to keep each at most {MAX_CLIENTS_PER_GENERATOR:,})")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, both targets")
    parser.add_argument("--ramp", type=float, default=1000, help="connects per second, all generators together")
    parser.add_argument("--source-ips", type=int, default=8, help="source addresses 127.0.0.2 onwards")
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S,
                        help="seconds from connect() to the response head before a client counts as failed")
    parser.add_argument("--bridge-publish", choices=("pooled", "sse.publish"), default="pooled",
                        help="how the Flask-SSE bridge publishes (see bench/flask_sse_bridge.py)")
    parser.add_argument("--sample-every", type=int, default=10,
                        help=f"about 1 client in k reads each chunk at once and records ages; the others read "
                             f"every {BATCH_READ_S:g} s (cheaper for the load generator); 1: every client")
    parser.add_argument("--transport", choices=("sse", "ws"), default="sse",
                        help="pricefeed's transport: SSE (/stream) or WebSocket (/ws)")
    add_settings_argument(parser, "every pricefeed round (the anchors run as they are)")
    parser.add_argument("--stock", action="store_true",
                        help="pricefeed as ./run.sh starts it: only Redis, pairs and the pace set, no capacity "
                             "settings, soft open-files limit 1024 (bench/stock_server.py); --workers is ignored")
    parser.add_argument("--json-out", type=Path, help="also append each round's JSON object to this file")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    if not all(0 < c <= MAX_CLIENTS for c in counts) or not 0 < args.duration <= 900:
        raise SystemExit(f"clients must be 1..{MAX_CLIENTS:,} and duration at most 900 s")
    if not 0 < args.ramp <= 5000 or not 1 <= args.source_ips <= 250 or args.sample_every < 1:
        raise SystemExit("ramp must be at most 5,000 connects/s, source-ips 1..250, sample-every at least 1")
    if not 0 < args.connect_timeout <= 60:
        raise SystemExit("connect-timeout must be at most 60 s")
    # gunicorn, redis-server and the generators inherit it; each holds up to ~10,000 streams.
    open_files = raise_open_files_limit()
    needed = min(max(counts), MAX_CLIENTS_PER_GENERATOR) + 1000
    if open_files < needed:
        raise SystemExit(f"the open-files limit is {open_files}; {max(counts):,} clients need {needed:,} "
                         f"per process (raise the hard limit: ulimit -Hn)")
    scenario = SCENARIOS[args.scenario]
    targets = ("pricefeed", "flask-sse") if args.target == "both" else tuple(args.target.split(","))
    if not set(targets) <= set(TARGETS):
        raise SystemExit(f"--target: expected {', '.join(TARGETS)} or both")
    if (args.transport == "ws" or scenario.groups) and targets != ("pricefeed",):
        raise SystemExit("WebSocket and mixed paces are pricefeed's only: use --target pricefeed")
    rows = []
    with RedisServer() as redis_server, SimulatorProcess(pairs=",".join(SYMBOLS), rate=scenario.rate) as sim:
        maxclients = _raise_redis_maxclients(redis_server)
        for clients in counts:
            for target in targets:
                try:
                    row = run_round(target, scenario, clients, args, redis_server, sim)
                except Exception as error:   # noqa: BLE001 - one failed round must not lose the others
                    row = {"target": target, "scenario": scenario.name, "clients": clients, "error": repr(error)}
                row["redis_maxclients"] = maxclients
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json_out:
                    with args.json_out.open("a") as out:
                        out.write(json.dumps(row) + "\n")
    print(f"\n{scenario.name}: {len(PAIRS)} pairs, {scenario.rate:g} ticks/s, {scenario.pairs_per_client} pairs "
          f"per client, p99 bound {scenario.p99_bound_ms:g} ms\n")
    print(TABLE_HEADER)
    for row in rows:
        print(table_row(row))
    print()
    for target in targets:
        passed = [r["clients"] for r in rows if r["target"] == target and r.get("within_bound")]
        print(f"{target}: largest N within the {scenario.name} p99 bound ({scenario.p99_bound_ms:g} ms): "
              f"{max(passed) if passed else 'none'} (of {', '.join(str(c) for c in counts)})")


if __name__ == "__main__":
    main()
