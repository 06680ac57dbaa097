"""/metrics across two gunicorn workers: real gunicorn, real redis-server, the simulator.

A scrape lands on either worker and must describe both: counters summed over the
workers and growing with traffic, one leader, and a worker killed with SIGKILL
gone from every live gauge once gunicorn has replaced it.
"""
from __future__ import annotations

import os
import signal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

METRICS = "/api/market-data/metrics"
STREAM = f"/api/market-data/stream?pairs={PAIRS}"
REQUIRED = [
    "pricefeed_upstream_messages_total", "pricefeed_upstream_reconnects_total", "pricefeed_upstream_connected",
    "pricefeed_lease_leader", "pricefeed_lease_changes_total", "pricefeed_bus_received_total",
    "pricefeed_clients", "pricefeed_events_written_total", "pricefeed_conflated_total",
    "pricefeed_slow_client_disconnects_total", "pricefeed_admission_refused_total", "pricefeed_mode",
    "pricefeed_breaker_open", "pricefeed_tick_to_write_seconds_bucket", "pricefeed_tick_to_write_seconds_count",
    "pricefeed_flush_seconds_bucket", "pricefeed_flush_seconds_count", "pricefeed_flush_lag_seconds",
    "pricefeed_shedding",
]


class Scrape:
    """One parsed /metrics answer: sample values by name and labels."""

    def __init__(self, text: str):
        self.samples: dict[str, list[tuple[dict, float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def total(self, name: str, **labels: str) -> float:
        return sum(value for found, value in self.samples[name]
                   if all(found.get(key) == want for key, want in labels.items()))


def scrape(instance: GunicornProcess) -> Scrape:
    status, body = instance.get(METRICS)
    assert status == 200, body[:300]
    return Scrape(body.decode())


def worker_health(instance: GunicornProcess, workers: int = 2) -> dict[str, dict]:
    """The detailed /health of each worker (requests land on either one: ask until all have answered)."""
    seen: dict[str, dict] = {}

    def every_worker():
        health = instance.health()
        seen.setdefault(health["worker"]["id"], health)
        return len(seen) >= workers
    wait_until(every_worker, 15, interval=0.02, message="a health report from every worker")
    return seen


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def deployment(redis_server):
    with SimulatorProcess(pairs=SYMBOLS, rate=20) as sim:
        instance = GunicornProcess(workers=2, env=instance_env(sim, redis_server.url, new_prefix()))
        try:
            all_live([instance])
            yield instance
        finally:
            instance.stop()


def test_one_scrape_shows_every_series_summed_over_both_workers_and_rising_with_traffic(deployment):
    first = scrape(deployment)
    missing = [name for name in REQUIRED if name not in first.samples]
    assert not missing, f"series missing from /metrics: {missing}"
    assert wait_until(lambda: scrape(deployment).total("pricefeed_workers") == 2, 5, message="2 workers")
    # The metrics follow the node once a second: wait for the leader's first update.
    assert wait_until(lambda: scrape(deployment).total("pricefeed_lease_leader") == 1, 10, message="one leader")
    assert wait_until(lambda: scrape(deployment).total("pricefeed_upstream_connected") == 1, 10,
                      message="one exchange connection")
    # Each worker turns live when it hears the leader's first heartbeat: wait for both.
    assert wait_until(lambda: scrape(deployment).total("pricefeed_mode", mode="live") == 2, 10,
                      message="both workers live")

    # Summed: bracketed by the sum of both workers' own counters, read before and after.
    before = worker_health(deployment)
    received_before = sum(h["bus"]["received"] for h in before.values())
    assert wait_until(lambda: scrape(deployment).total("pricefeed_bus_received_total") >= received_before, 5,
                      message="the scrape to include both workers' ticks")
    summed = scrape(deployment).total("pricefeed_bus_received_total")
    after = worker_health(deployment)
    assert summed <= sum(h["bus"]["received"] for h in after.values())
    assert summed > 1.5 * max(h["bus"]["received"] for h in before.values())   # both, not one

    # Rising with traffic: streams open, events are written, ticks keep coming.
    clients = [SSEClient(deployment.url + STREAM) for _ in range(4)]
    try:
        for client in clients:
            client.wait_for(lambda c: len(c.of("price")) >= 3, 10, "prices on every stream")
        assert wait_until(lambda: scrape(deployment).total("pricefeed_clients", transport="sse") == 4, 5,
                          message="4 streams counted")
        rising = scrape(deployment)
        wait_until(lambda: all(
            scrape(deployment).total(name) > rising.total(name)
            for name in ("pricefeed_events_written_total", "pricefeed_upstream_messages_total",
                         "pricefeed_tick_to_write_seconds_count", "pricefeed_flush_seconds_count")),
            10, message="counters and histograms to grow with traffic")
        written = sum(len(c.of("price")) for c in clients)
        assert scrape(deployment).total("pricefeed_events_written_total") >= written * 0.5
        assert scrape(deployment).total("pricefeed_tick_to_write_seconds_bucket", le="+Inf") > 0
    finally:
        for client in clients:
            client.close()
    assert wait_until(lambda: scrape(deployment).total("pricefeed_clients", transport="sse") == 0, 5,
                      message="closed streams to leave the gauge")


def test_a_killed_worker_leaves_the_live_gauges_once_it_is_replaced(deployment):
    clients = [SSEClient(deployment.url + STREAM) for _ in range(6)]
    try:
        for client in clients:
            client.wait_for(lambda c: c.of("snapshot"), 10, "a snapshot")
        on_worker = [int(c.of("snapshot")[0].json()["worker"].rsplit(":", 1)[1]) for c in clients]
        victim = on_worker[0]
        survivors = sum(1 for pid in on_worker if pid != victim)
        wait_until(lambda: scrape(deployment).total("pricefeed_clients", transport="sse") == 6, 5,
                   message="6 streams counted")
        written_before = scrape(deployment).total("pricefeed_events_written_total")
        old_pids = set(deployment.worker_pids())
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(set(deployment.worker_pids()) - old_pids) == 1 and victim not in
                   deployment.worker_pids(), 15, message="gunicorn to replace the killed worker")
        all_live([deployment])

        def only_the_living():
            now = scrape(deployment)
            return (now.total("pricefeed_workers") == 2
                    and now.total("pricefeed_clients", transport="sse") == survivors
                    and now.total("pricefeed_lease_leader") == 1
                    and now.total("pricefeed_mode") == 2) and now
        after = wait_until(only_the_living, 15, message="the dead worker's live gauges to be gone")
        # Its counters stay: totals never fall when a worker dies.
        assert after.total("pricefeed_events_written_total") >= written_before
    finally:
        for client in clients:
            client.close()
