"""What bench/overload.py and bench/restart.py share: the servers, the load generators
(clients that reconnect like browsers: bench/browser_load.py, or its Node.js twin
bench/node/browsers.mjs, cheaper in CPU), and the figures."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.fanout_scenarios import PAIRS, SCENARIOS, Scenario, client_pairs, stream_path
from bench.proc_sampler import children_of
from tests.support.deployment import all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess

ROOT = Path(__file__).resolve().parents[1]
MAX_CLIENTS_PER_GENERATOR = 10_000
# Node holds more streams per process for its CPU; each is one file, and the open-files
# limit here is 20,000. At least 2 processes either way, so that both cores are used.
MAX_CLIENTS_PER_NODE_GENERATOR = 15_000
GENERATORS = ("python", "node")
CHILD_STARTUP_S = 3


@contextmanager
def pricefeed(scenario: Scenario, redis_server: RedisServer, sim: SimulatorProcess,
              workers: int = 2, /, **env: str) -> Iterator[tuple[GunicornProcess, str]]:
    """A 2-worker pricefeed instance sized for 20,000 streams; yields it and its Redis key prefix.
    `env` adds settings by name (PRICEFEED_...); `workers` is positional, so no name is taken."""
    prefix = new_prefix()
    settings = instance_env(sim, redis_server.url, prefix, PRICEFEED_PAIRS=",".join(PAIRS),
                            PRICEFEED_MAX_CLIENTS="12000", PRICEFEED_WORKER_CONNECTIONS="12000",
                            PRICEFEED_MIN_UPDATE_INTERVAL=f"{scenario.min_update_interval:g}",
                            PRICEFEED_LOG_LEVEL="WARNING", PRICEFEED_HEARTBEAT_INTERVAL="15")
    settings.update(env)
    with GunicornProcess(workers=workers, env=settings) as app:
        all_live([app])
        yield app, prefix


def workers_of(app: GunicornProcess) -> list[int]:
    return children_of(app.proc.pid)


def start_generators(spec: dict[str, Any], generator: str = "python") -> list[subprocess.Popen]:
    """The load-generator processes, each given the spec with its share of the clients
    (clients first, first + step, ...): bench/browser_load.py, or bench/node/browsers.mjs."""
    if generator == "node":
        per_process = MAX_CLIENTS_PER_NODE_GENERATOR
        command = ["node", "bench/node/browsers.mjs"]
        spec = {**spec, "stream_paths": stream_paths(SCENARIOS[spec["scenario"]])}
    elif generator == "python":
        per_process, command = MAX_CLIENTS_PER_GENERATOR, [sys.executable, "-m", "bench.browser_load"]
    else:
        raise ValueError(f"generator {generator!r}: expected one of {', '.join(GENERATORS)}")
    count = max(2, math.ceil(spec["clients"] / per_process))
    return [subprocess.Popen(command + [json.dumps({**spec, "first": k, "step": count})], cwd=ROOT,
                             stdout=subprocess.PIPE) for k in range(count)]


def stream_paths(scenario: Scenario) -> list[str]:
    """The stream path of client i is paths[i % len(paths)]: a client's pairs repeat with
    i mod len(PAIRS), its group with i mod group_every. The Node generator takes these
    rather than its own copy of the scenarios."""
    period = len(PAIRS) * max(1, scenario.group_every)
    return [stream_path("pricefeed", client_pairs(scenario, index)) for index in range(period)]


def collect(children: list[subprocess.Popen], deadline: float) -> list[dict[str, Any]]:
    results = []
    for child in children:
        try:
            out, _ = child.communicate(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            results.append({"error": "load generator overran its deadline"})
            continue
        lines = out.decode(errors="replace").strip().splitlines()
        results.append(json.loads(lines[-1]) if child.returncode == 0 and lines
                       else {"error": f"load generator exited with {child.returncode}"})
    return results


def merge_histograms(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Percentiles (nearest rank) over the generators' 1 ms histograms under `key`."""
    buckets: Counter[int] = Counter()
    for result in results:
        buckets.update({int(k): v for k, v in result[key]["buckets"].items()})
    total = sum(buckets.values())
    figures: dict[str, Any] = {"n": total, "max": max((r[key]["max"] for r in results), default=None)}
    for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        figures[name] = percentile_of(buckets, total, fraction)
    return figures


def percentile_of(buckets: Counter[int], total: int, fraction: float) -> int | None:
    if not total:
        return None
    rank, seen = math.ceil(fraction * total), 0
    for value in sorted(buckets):
        seen += buckets[value]
        if seen >= rank:
            return value
    return None


def percentiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    pick = lambda f: round(ordered[min(len(ordered) - 1, math.ceil(f * len(ordered)) - 1)], 3)  # noqa: E731
    return {"n": len(ordered), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": round(ordered[-1], 3)}


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def source_ips(count: int = 8) -> list[str]:
    return [f"127.0.0.{2 + i}" for i in range(count)]


def rss_kb(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return 0
