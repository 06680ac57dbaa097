"""The fault table: every fault of the fallback suite, repeated, with what users would observe.

    .venv/bin/python -m bench.faults --repeats 10 [--only drop,redis_kill] [--quiet-seconds 300]

A Redis deployment (one gunicorn instance, 2 gevent workers, its own redis-server),
the simulator at 20 ticks/s on 3 pairs, 8 SSE clients. Per fault and repeat:
- detection: fault → the service visibly reacts (a status event, or the leader's
  upstream counters showing the fault was noticed and acted on);
- recovery: fault → every client holds a tick stamped by the exchange after the fault ended;
- ticks lost: trades the exchange made in that window that no client price event carried
  (the exchange does not resend; the miniTicker repairs the final price);
- clients disconnected, mode changes the clients were told, and the slowest /health answer;
- for the quiet-market and hostile rows, what they are about (`notes`): seconds until the
  exchange sees one connection again, reconnects and stale flags during a quiet market.
Loopback only; bounded; stops by itself. Prints a markdown table and JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.observe import mode_sequence
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

STREAM = f"/api/market-data/stream?pairs={PAIRS}"
CLIENTS = 8


@dataclass
class Run:
    detection_s: float | None = None
    recovery_s: float | None = None
    ticks_lost: int = 0
    disconnected: int = 0
    mode_changes: int = 0
    health_ms_max: float = 0.0
    notes: dict = field(default_factory=dict)


@dataclass
class Deployment:
    redis: RedisServer
    sim: SimulatorProcess
    app: GunicornProcess
    clients: list[SSEClient] = field(default_factory=list)
    notes: dict = field(default_factory=dict)   # what the fault action measured itself

    def leader_upstream(self) -> dict | None:
        """The leader's upstream counters, or None if no leader answered (e.g. it is frozen)."""
        for _ in range(20):
            health = self.app.health()
            if health["worker"]["role"] == "leader":
                return health["upstream"]
        return None


def trade_ids(sim) -> dict[str, int]:
    """Each symbol's latest exchange trade id (a symbol that has not traded yet is absent)."""
    return {symbol: p["trade_id"] for symbol, p in sim.prices().items() if p.get("trade_id") is not None}


def trades_between(before: dict[str, int], after: dict[str, int]) -> int:
    # Only symbols known at both ends: one that first trades in between has no starting id
    # (counting from 0 would add its whole id, ~10^8, to "ticks lost").
    return sum(after[symbol] - before[symbol] for symbol in after if symbol in before)


def health_ms(app: GunicornProcess) -> float:
    started = time.monotonic()
    try:
        app.get("/api/market-data/health", timeout=5)
    except OSError:
        return 5000.0
    return (time.monotonic() - started) * 1000


FaultAction = Callable[[Deployment], float]   # injects the fault; returns when it ends (epoch seconds)


def upstream_fault(body: dict, lasts: float = 0.0, then_drop: bool = False) -> FaultAction:
    def inject(d: Deployment) -> float:
        d.sim.fault(**body)
        if then_drop:
            d.sim.fault(fault="drop")
        return time.time() + lasts
    return inject


def redis_kill(d: Deployment) -> float:
    d.redis.kill()
    time.sleep(3)   # the fault lasts 3 s: Redis is gone
    d.redis.restart()
    return time.time()


def redis_freeze(d: Deployment) -> float:
    d.redis.freeze()
    time.sleep(4)   # the fault lasts 4 s: Redis accepts nothing and answers nothing
    d.redis.thaw()
    return time.time()


def hub_block(d: Deployment) -> float:
    """Block the leader worker's hub (the POST lands on a random worker: repeat until the leader took it)."""
    leader = d.app.health()["leader"]["worker"]
    for _ in range(100):
        status, _ = d.app.get(f"/api/market-data/_fault/block-hub?seconds=3&worker={leader}", method="POST",
                              timeout=10)
        if status == 200:
            break
    return time.time()


QUIET_SECONDS = [300.0]   # --quiet-seconds
HOSTILE_KINDS = ("time_400_digits", "time_far_future", "price_negative", "price_zero", "price_leading_zeros",
                 "price_100k_digits", "symbol_unicode", "frame_12mb", "huge_trade_id", "ids_jump_back")


def shutdown_on_quiet_market(d: Deployment) -> float:
    """No trades; serverShutdown without a close (the server leaves it to us): time to one connection."""
    d.sim.market(paused=True)
    time.sleep(0.5)
    d.sim.reset_stats()
    announced = time.monotonic()
    d.sim.fault(fault="shutdown", close=False)
    wait_until(lambda: d.sim.stats()["connections_total"] >= 1 and d.sim.stats()["connections_open"] == 1,
               30, interval=0.01, message="one connection again")
    d.notes["one_connection_s"] = round(time.monotonic() - announced, 3)
    d.sim.market(paused=False)
    return time.time()


def quiet_market(d: Deployment) -> float:
    """No trades for QUIET_SECONDS while pings and control replies go on: nothing may happen."""
    upstream = d.leader_upstream() or {}
    d.sim.market(paused=True)
    d.sim.reset_stats()
    stale_seen, ends = 0, time.monotonic() + QUIET_SECONDS[0]
    while time.monotonic() < ends:
        health = d.app.health()
        stale_seen += sum(1 for p in health["pairs"].values() if p and p["stale"]) + (health["mode"] != "live")
        time.sleep(1.0)
    after = d.leader_upstream() or {}
    stats = d.sim.stats()
    d.notes.update(quiet_s=QUIET_SECONDS[0], exchange_connections=stats["connections_total"],
                   reconnects=after.get("reconnects", 0) - upstream.get("reconnects", 0),
                   probes_answered=after.get("probes_answered", 0) - upstream.get("probes_answered", 0),
                   health_samples_stale_or_not_live=stale_seen,
                   pings=stats["pings_sent"], replies=stats["responses_sent"])
    d.sim.market(paused=False)
    return time.time()


def hostile_frames(d: Deployment) -> float:
    """Every hostile frame of the simulator, one after another."""
    d.sim.reset_stats()
    for kind in HOSTILE_KINDS:
        d.sim.fault(fault="hostile", kind=kind)
        time.sleep(0.3)
    wait_until(lambda: d.sim.stats()["connections_open"] == 1, 10, message="one connection")
    d.notes["max_concurrent_connections"] = d.sim.stats()["max_concurrent"]
    return time.time()


def exchange_and_rest_down(d: Deployment) -> float:
    d.sim.fault(fault="rest", status=500, duration=8)
    d.sim.fault(fault="refuse", status=429, duration=8, retry_after=1)
    d.sim.fault(fault="drop")
    return time.time() + 8


FAULTS: dict[str, FaultAction] = {
    "drop": upstream_fault({"fault": "drop"}),
    "silence 3 s": upstream_fault({"fault": "silence", "duration": 3}, lasts=3),
    "stall 6 s": upstream_fault({"fault": "stall", "duration": 6}, lasts=6),
    "no pongs 3 s": upstream_fault({"fault": "ignore_pongs", "duration": 3}, lasts=3),
    "malformed x20": upstream_fault({"fault": "malformed", "count": 20}),
    "close 1008": upstream_fault({"fault": "close", "code": 1008, "reason": "Too many requests"}),
    "serverShutdown": upstream_fault({"fault": "shutdown"}),
    "429 handshake x2": upstream_fault({"fault": "refuse", "status": 429, "count": 2, "retry_after": 1},
                                       then_drop=True),
    "418 handshake x2": upstream_fault({"fault": "refuse", "status": 418, "count": 2, "retry_after": 1},
                                       then_drop=True),
    "exchange down 8 s + REST 500": exchange_and_rest_down,   # two faults at once
    "redis kill -9 + restart": redis_kill,
    "redis SIGSTOP 4 s": redis_freeze,
    "leader hub blocked 3 s": hub_block,
    "serverShutdown on a quiet market": shutdown_on_quiet_market,
    "quiet market": quiet_market,
    "hostile frames x10": hostile_frames,
}




def run_once(d: Deployment, inject: FaultAction) -> Run:
    run = Run()
    d.notes = {}
    for client in d.clients:
        client.wait_for(lambda c: c.of("price"), 15, "prices before the fault")
    upstream_before = d.leader_upstream() or {}
    modes_before = [len(mode_sequence(c)) for c in d.clients]
    epoch_before = max(int(e.required_id().split("-")[0]) for c in d.clients for e in c.of("price"))
    ids_before = trade_ids(d.sim)
    started = time.time()
    sampling = True

    def sample_health():
        while sampling:
            run.health_ms_max = max(run.health_ms_max, health_ms(d.app))
            time.sleep(0.2)
    sampler = threading.Thread(target=sample_health, daemon=True)
    sampler.start()
    # The fault runs on its own thread: some last a while (Redis down for 3 s), and
    # detection must be measured while they last, not after.
    fault_ended: list[float] = []
    injector = threading.Thread(target=lambda: fault_ended.append(inject(d)), daemon=True)
    injector.start()

    def detected():
        """The service visibly reacted: a status change, a new leader's tick, or the leader's
        upstream counters showing it noticed the fault."""
        if any(len(mode_sequence(c)) > n for c, n in zip(d.clients, modes_before, strict=False)):
            return True
        if any(int(e.required_id().split("-")[0]) > epoch_before for c in d.clients for e in c.of("price")[-20:]):
            return True
        now = d.leader_upstream()
        if now is None:
            return False
        keys = ("connects", "silence_timeouts", "malformed", "rotations", "handshake_refusals")
        return any(now.get(k, 0) != upstream_before.get(k, 0) for k in keys)
    try:
        wait_until(detected, 30, interval=0.05, message="detection")
        run.detection_s = time.time() - started
    except AssertionError:
        run.detection_s = None
    injector.join(timeout=QUIET_SECONDS[0] + 120)
    ended_ms = int(max(fault_ended[0] if fault_ended else time.time(), started) * 1000)

    def fresh_everywhere():
        return all(any(e.json()["ts"] >= ended_ms and e.json()["source"] != "rest" for e in c.of("price")[-50:])
                   for c in d.clients)
    wait_until(fresh_everywhere, 60, interval=0.05, message="recovery")
    recovered = time.time()
    run.recovery_s = recovered - started
    sampling = False
    sampler.join(timeout=6)
    made = trades_between(ids_before, trade_ids(d.sim))
    seen = len({(e.json()["pair"], e.json()["ts"], e.json()["price"]) for e in d.clients[0].of("price")
                if started * 1000 <= e.json()["ts"] <= recovered * 1000})
    run.ticks_lost = max(0, made - seen)
    run.disconnected = sum(1 for c in d.clients if c.closed)
    run.mode_changes = sum(len(mode_sequence(c)) - n for c, n in zip(d.clients, modes_before, strict=False))
    run.notes = dict(d.notes)
    return run


def summarize(name: str, runs: list[Run]) -> dict:
    def med(values):
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 2) if values else None

    def worst(values):
        values = [v for v in values if v is not None]
        return round(max(values), 2) if values else None
    return {
        "fault": name, "runs": len(runs),
        "detection_s_p50": med([r.detection_s for r in runs]), "detection_s_max": worst([r.detection_s for r in runs]),
        "recovery_s_p50": med([r.recovery_s for r in runs]), "recovery_s_max": worst([r.recovery_s for r in runs]),
        "ticks_lost_p50": med([r.ticks_lost for r in runs]), "ticks_lost_max": worst([r.ticks_lost for r in runs]),
        "clients_disconnected": sum(r.disconnected for r in runs),
        "mode_changes": sum(r.mode_changes for r in runs),
        "notes": _merge_notes([r.notes for r in runs]),
        "undetected": sum(1 for r in runs if r.detection_s is None),
        "health_ms_max": worst([r.health_ms_max for r in runs]),
    }


def _merge_notes(notes: list[dict]) -> dict:
    """Per key: the single value, or p50 / max over the runs."""
    merged = {}
    for key in sorted({k for n in notes for k in n}):
        values = [n[key] for n in notes if key in n]
        merged[key] = values[0] if len(values) == 1 else f"{statistics.median(values)} / {max(values)}"
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated fault names (default: all)")
    parser.add_argument("--quiet-seconds", type=float, default=300.0, help="how long the quiet market lasts")
    parser.add_argument("--probe-timeout", type=float, default=3.0,
                        help="PRICEFEED_UPSTREAM_PROBE_TIMEOUT of the deployment (its default is 3 s)")
    args = parser.parse_args()
    QUIET_SECONDS[0] = args.quiet_seconds
    print(f"load average before: {open('/proc/loadavg').read().strip()}", flush=True)
    wanted = [n for n in FAULTS if not args.only or n in args.only.split(",")]
    rows = []
    for name in wanted:
        redis_server = RedisServer()
        sim = SimulatorProcess(pairs=SYMBOLS, rate=20, ping_interval=0.5, pong_timeout=2)
        env = instance_env(sim, redis_server.url, new_prefix(), PRICEFEED_UPSTREAM_SILENCE_TIMEOUT="1.5",
                           PRICEFEED_FAULT_INJECTION="true", PRICEFEED_REST_URL=sim.http_url,
                           PRICEFEED_LOG_LEVEL="WARNING",
                           PRICEFEED_UPSTREAM_PROBE_TIMEOUT=str(args.probe_timeout))
        app = GunicornProcess(workers=2, env=env)
        deployment = Deployment(redis_server, sim, app)
        runs = []
        try:
            # Every worker, not just the one that answers first: a follower still joining would
            # announce its "live" to the clients of the first run as if the fault had caused it.
            all_live([app])
            for _ in range(args.repeats):
                deployment.clients = [SSEClient(app.url + STREAM) for _ in range(CLIENTS)]
                runs.append(run_once(deployment, FAULTS[name]))
                for client in deployment.clients:
                    client.close()
                sim.fault(fault="clear")
                wait_until(lambda: all(app.health()["mode"] == "live" for _ in range(4)), 60, message="calm")
        finally:
            app.stop()
            sim.stop()
            redis_server.stop()
        rows.append(summarize(name, runs))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print("| fault | runs | detection p50 / max | recovery p50 / max | ticks lost p50 / max "
          "| clients disconnected | mode changes | slowest /health | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        notes = ", ".join(f"{k} {v}" for k, v in r["notes"].items())
        print(f"| {r['fault']} | {r['runs']} | {r['detection_s_p50']} / {r['detection_s_max']} s "
              f"| {r['recovery_s_p50']} / {r['recovery_s_max']} s | {r['ticks_lost_p50']} / {r['ticks_lost_max']} "
              f"| {r['clients_disconnected']} | {r['mode_changes']} | {r['health_ms_max']} ms | {notes} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
