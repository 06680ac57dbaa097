"""Frames no one should trust, sent by the exchange into a running deployment.

A real redis-server, two gunicorn instances of two gevent workers each, the
simulator sending each hostile frame in turn on the leader's connection. After
every one: the mode stays `live` for every client, the exchange sees one
connection, every client keeps receiving every pair, and the leader's /health
names the reason it rejected the frame for. At the end every client holds the
exchange's final prices and no worker has restarted.
"""
from __future__ import annotations

import json
import time

from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.observe import mode_sequence
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

STREAM = f"/api/market-data/stream?pairs={PAIRS}"
# Each hostile kind and the reason the leader's /health must count it under (None: a valid
# frame that must not mute the symbol; the de-duplication memory is reset instead).
HOSTILE = [
    ("time_400_digits", "time_out_of_window"),
    ("time_far_future", "time_out_of_window"),
    ("price_negative", "price_shape"),
    ("price_zero", "price_not_positive"),
    ("price_leading_zeros", "price_shape"),
    ("price_100k_digits", "price_too_long"),
    ("symbol_unicode", "symbol_shape"),
    ("frame_12mb", "frame_too_large"),
    ("huge_trade_id", None),
    ("ids_jump_back", None),
]


def leader_upstream(instances: list[GunicornProcess]) -> dict:
    """The upstream section of the leader's own /health (health lands on a random worker)."""
    def ask():
        for instance in instances:
            health = instance.health()
            if health["worker"]["role"] == "leader":
                return health["upstream"]
        return None
    return wait_until(ask, 10, interval=0.02, message="the leader's /health")


def every_worker(instances: list[GunicornProcess], check, message: str, timeout: float = 15) -> None:
    """`check(health)` holds on every worker of every instance (health lands on a random worker)."""
    for instance in instances:
        workers = len(instance.worker_pids())
        passed: set[str] = set()

        def all_passed():
            health = instance.health()
            if check(health):
                passed.add(health["worker"]["id"])
            return len(passed) >= workers
        wait_until(all_passed, timeout, interval=0.02, message=f"{message} on every worker of {instance.url}")


def fresh_tick_of_every_pair(clients: list[SSEClient], since_ms: int, timeout: float = 20) -> None:
    pairs = set(PAIRS.split(","))
    for client in clients:
        client.wait_for(lambda c: {e.json()["pair"] for e in c.of("price") if e.json()["ts"] >= since_ms} == pairs,
                        timeout, f"a fresh tick of every pair since {since_ms}")


def test_hostile_frames_are_rejected_by_reason_and_nobody_notices():
    with SimulatorProcess(pairs=SYMBOLS, rate=30, ping_interval=1) as sim, RedisServer() as redis_server:
        prefix = new_prefix()
        instances = [GunicornProcess(workers=2, env=instance_env(sim, redis_server.url, prefix))
                     for _ in range(2)]
        clients: list[SSEClient] = []
        try:
            all_live(instances)
            workers = [sorted(instance.worker_pids()) for instance in instances]
            clients = [SSEClient(instance.url + STREAM) for instance in instances for _ in range(2)]
            fresh_tick_of_every_pair(clients, 0)
            wait_until(lambda: sim.stats()["connections_open"] == 1, 10, message="one upstream connection")
            connections_before = sim.stats()["connections_total"]
            for kind, reason in HOSTILE:
                before = leader_upstream(instances)
                sent_ms = int(time.time() * 1000)
                sim.fault(fault="hostile", kind=kind)
                if reason is not None:
                    wait_until(lambda: leader_upstream(instances)["rejected"].get(reason, 0)
                               > before["rejected"].get(reason, 0), 10, message=f"{kind} counted as {reason}")
                else:
                    wait_until(lambda: leader_upstream(instances)["dedup_resets"] > before["dedup_resets"], 10,
                               message=f"{kind} resetting the de-duplication memory")
                # Every pair, the attacked one included, keeps ticking for every client.
                fresh_tick_of_every_pair(clients, sent_ms)
                wait_until(lambda: sim.stats()["connections_open"] == 1, 5,
                           message=f"one upstream connection after {kind}")
                for client in clients:
                    assert mode_sequence(client) == ["live"], (kind, mode_sequence(client))
            # Only the oversized frame costs a connection, replaced make-before-break.
            stats = sim.stats()
            assert stats["connections_total"] == connections_before + 1, stats
            assert stats["max_concurrent"] <= 2
            upstream = leader_upstream(instances)
            assert upstream["oversized_frames"] == 1 and upstream["reconnects"] == 0, upstream
            assert {r for _, r in HOSTILE if r} <= set(upstream["rejected"]), upstream["rejected"]
            # The same rules at the bus: a hostile tick published straight into Redis is skipped by
            # every worker's one subscription, which stays the one it was.
            subscriptions: dict[str, int] = {}
            every_worker(instances, lambda h: subscriptions.setdefault(h["worker"]["id"], h["bus"]["subscriptions"]),
                         "subscriptions counted")
            redis_server.client.publish(f"{prefix}:ticks", "T" + json.dumps(
                ["BTC/USD", "BTCUSDT", "1.0", 10**399, "binance", None, 10**6, 1]))
            every_worker(instances, lambda h: h["bus"]["rejected"].get("time_out_of_window") == 1
                         and h["bus"]["subscriptions"] == subscriptions[h["worker"]["id"]], "the bad tick skipped")
            fresh_tick_of_every_pair(clients, int(time.time() * 1000))
            sim.market(paused=True)
            final = sim.prices()
            final_by_pair = {pair: final[symbol]["price"] for pair, symbol in zip(PAIRS.split(","), SYMBOLS.split(","), strict=True)}
            for client in clients:
                client.wait_for(lambda c: c.latest_prices() == final_by_pair, 15,
                                f"the exchange's final prices {final_by_pair}")
                assert not client.closed and mode_sequence(client) == ["live"]
            for instance in instances:
                health = instance.health()
                assert health["mode"] == "live" and health["bus"]["rejected"] == {"time_out_of_window": 1}, health["bus"]
            assert [sorted(instance.worker_pids()) for instance in instances] == workers, "a worker restarted"
        finally:
            for client in clients:
                client.close()
            for instance in instances:
                instance.stop()
