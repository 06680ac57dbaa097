"""Failover figures for a Redis deployment: kill -9, graceful stop and SIGSTOP of the leader, repeated.

    .venv/bin/python -m bench.failover --kills 20 --graceful 10 --stops 5

Two gunicorn instances x 2 workers on one redis-server (own port), the simulator
at 20 ticks/s. For each round it finds the leader worker through /health, hurts
it, and measures on an SSE client of another worker:
- kill -9:  time from the kill to the first tick of the new epoch at the client;
- SIGTERM:  handover gap = first new-epoch tick − last old-epoch tick at the client;
- SIGSTOP for 2x the lease TTL: ticks of an older epoch delivered after a newer one (must be 0),
  and whether the exchange sees one connection again once the old leader resumes.
It also records the simulator's max concurrent upstream connections. Stops by itself.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import time

from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, leader_pid, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

STREAM = f"/api/market-data/stream?pairs={PAIRS}"


def epoch_of(event) -> int:
    return int(event.id.split("-")[0])


def client_elsewhere(instances, pid: int) -> SSEClient:
    """An SSE client whose worker is not `pid`."""
    for _ in range(50):
        for instance in instances:
            client = SSEClient(instance.url + STREAM)
            if client.status != 200:   # 503 from a worker that is shutting down: try again
                continue
            client.wait_for(lambda c: c.of("snapshot") and c.of("price"), 10, "prices")
            if not client.of("snapshot")[0].json()["worker"].endswith(f":{pid}"):
                return client
            client.close()
    raise RuntimeError("every stream landed on the leader")


def wait_recovered(client: SSEClient, epoch: int) -> None:
    pairs = set(PAIRS.split(","))
    client.wait_for(lambda c: {e.json()["pair"] for e in c.of("price") if epoch_of(e) == epoch} == pairs,
                    15, "every pair from the new leader")


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {}
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(ordered), "min": round(ordered[0], 3), "p50": round(statistics.median(ordered), 3),
            "p90": round(pick(0.9), 3), "max": round(ordered[-1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--graceful", type=int, default=10)
    parser.add_argument("--stops", type=int, default=5)
    args = parser.parse_args()
    kill_gaps, handover_gaps, handover_from_signal, old_after_new, stop_recovery = [], [], [], [], []
    with RedisServer() as redis_server, SimulatorProcess(pairs=SYMBOLS, rate=20) as sim:
        prefix = new_prefix()
        env = instance_env(sim, redis_server.url, prefix, PRICEFEED_LOG_LEVEL="WARNING")
        instances = [GunicornProcess(workers=2, env=env), GunicornProcess(workers=2, env=env)]
        try:
            all_live(instances)
            sim.reset_stats()
            ttl = float(instances[0].health()["leader"]["lease"]["ttl_s"])
            for _ in range(args.kills):
                pid = leader_pid(instances)
                client = client_elsewhere(instances, pid)
                old = epoch_of(client.of("price")[-1])
                killed = time.time()
                os.kill(pid, signal.SIGKILL)
                first = client.wait_for(lambda c: next((e for e in c.of("price") if epoch_of(e) > old), None),
                                        ttl + 10, "new epoch")
                kill_gaps.append(first.received_at - killed)
                wait_recovered(client, epoch_of(first))
                client.close()
                all_live(instances)   # the respawned worker is up before the next round
            for _ in range(args.graceful):
                pid = leader_pid(instances)
                client = client_elsewhere(instances, pid)
                old = epoch_of(client.of("price")[-1])
                signalled = time.time()
                os.kill(pid, signal.SIGTERM)
                first = client.wait_for(lambda c: next((e for e in c.of("price") if epoch_of(e) > old), None),
                                        ttl + 10, "new epoch")
                last_old = max(e.received_at for e in client.of("price") if epoch_of(e) == old)
                handover_gaps.append(first.received_at - last_old)
                handover_from_signal.append(first.received_at - signalled)
                wait_recovered(client, epoch_of(first))
                client.close()
                all_live(instances)
            max_concurrent_restarts = sim.stats()["max_concurrent"]
            for _ in range(args.stops):
                pid = leader_pid(instances)
                clients = [SSEClient(i.url + STREAM) for i in instances for _ in range(3)]
                for c in clients:
                    c.wait_for(lambda c: c.of("price"), 10, "prices")
                os.kill(pid, signal.SIGSTOP)
                frozen = time.monotonic()
                wait_until(lambda: time.monotonic() - frozen >= 2 * ttl and leader_pid(instances) != pid, 20,
                           message="new leader while frozen")
                os.kill(pid, signal.SIGCONT)
                resumed = time.monotonic()
                wait_until(lambda: sim.stats()["connections_open"] == 1, 15, message="one upstream again")
                stop_recovery.append(time.monotonic() - resumed)
                newest = max(epoch_of(e) for c in clients for e in c.of("price"))
                for c in clients:
                    c.wait_for(lambda c: any(epoch_of(e) == newest for e in c.of("price")) or c.closed, 10, "new")
                for c in clients:
                    epochs = [epoch_of(e) for e in c.of("price")]
                    old_after_new.append(sum(1 for i in range(1, len(epochs)) if epochs[i] < max(epochs[:i])))
                    c.close()
                all_live(instances)
        finally:
            for instance in instances:
                instance.stop()
    report = {
        "lease_ttl_s": ttl,
        "kill9_to_first_new_tick_s": summary(kill_gaps),
        "graceful_handover_gap_s": summary(handover_gaps),
        "graceful_signal_to_first_new_tick_s": summary(handover_from_signal),
        "sigstop_old_epoch_ticks_after_new": sum(old_after_new),
        "sigstop_resume_to_single_upstream_s": summary(stop_recovery),
        "max_concurrent_upstream_over_kills_and_restarts": max_concurrent_restarts,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
