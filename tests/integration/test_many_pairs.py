"""500 pairs over several exchange connections, one set for the whole deployment.

Real redis-server, the simulator over real sockets with 500 listed symbols, two gunicorn
instances x 2 workers. The streams no longer fit one connection (about 210 pairs fill an
8,000-character handshake target): the leader holds as many connections as the limits
need, each its own feed (watchdog, rotation, serverShutdown), and the exchange sees
exactly that set, whatever the number of workers.
"""
from __future__ import annotations

import time

import pytest

from tests.support.deployment import ONE_ADDRESS_LOAD, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

COUNT = 500
SYMBOLS = [f"P{index:03d}USDT" for index in range(COUNT)]
PAIRS = [f"P{index:03d}/USDT" for index in range(COUNT)]
# ~39 characters of streams a pair: 210 + 210 + 80 pairs (tests/unit/test_stream_plan.py).
PLANNED = 3
STALE_AFTER = 3.0


@pytest.fixture(scope="module")
def sim():
    # 300 trades a second over 500 symbols: every symbol has traded (and so has a price)
    # within seconds; the mini tickers then carry each symbol's price every second.
    with SimulatorProcess(pairs=",".join(SYMBOLS), rate=300) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def deployment(sim):
    with RedisServer() as redis_server:
        env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url,
               "PRICEFEED_PAIRS": ",".join(PAIRS), "PRICEFEED_REDIS_URL": redis_server.url,
               "PRICEFEED_REDIS_PREFIX": new_prefix(), "PRICEFEED_STALE_AFTER": str(STALE_AFTER),
               "PRICEFEED_UPSTREAM_BACKOFF_CAP": "1", **ONE_ADDRESS_LOAD}
        instances = [GunicornProcess(workers=2, env=env) for _ in range(2)]
        try:
            yield instances
        finally:
            for instance in instances:
                instance.stop()


def on_every_worker(instances: list[GunicornProcess], check, message: str, timeout: float = 60) -> None:
    """`check(health)` holds on every worker of every instance (/health lands on a random worker)."""
    for instance in instances:
        workers = len(instance.worker_pids())
        passed: set[str] = set()

        def all_passed():
            health = instance.health()
            if check(health):
                passed.add(health["worker"]["id"])
            else:
                passed.discard(health["worker"]["id"])
            return len(passed) >= workers
        wait_until(all_passed, timeout, interval=0.05, message=f"{message} on every worker of {instance.url}")


def leader_upstream(instances: list[GunicornProcess]) -> dict:
    def ask():
        for instance in instances:
            health = instance.health()
            if health["worker"]["role"] == "leader":
                return health["upstream"]
        return None
    return wait_until(ask, 10, interval=0.02, message="the leader's /health")


def fresh(health: dict, pairs) -> bool:
    return all(health["pairs"].get(pair) is not None and not health["pairs"][pair]["stale"] for pair in pairs)


def everything_live(instances: list[GunicornProcess], sim: SimulatorProcess) -> None:
    on_every_worker(instances, lambda h: h["mode"] == "live" and fresh(h, PAIRS), "all 500 pairs priced and fresh")
    wait_until(lambda: len(sim.stats()["open_connections"]) == PLANNED and leader_upstream(instances)["connected"],
               20, message="the whole set connected")


def group_of(upstream: dict, pair: str) -> dict:
    """The leader's line for the connection that carries `pair` (pairs are planned in order)."""
    return next(line for line in upstream["connections"] if line["first_pair"] <= pair <= line["last_pair"])


def test_500_pairs_are_priced_over_connections_within_the_limits_one_set_for_the_deployment(deployment, sim):
    started = time.monotonic()
    everything_live(deployment, sim)
    all_priced_after = time.monotonic() - started
    browser = SSEClient(deployment[0].url + "/api/market-data/stream")   # no pairs: every configured one
    try:
        browser.wait_for(lambda c: len(c.latest_prices()) == COUNT, 30, "a price for every pair in the stream")
        assert set(browser.latest_prices()) == set(PAIRS)
    finally:
        browser.close()
    for instance in deployment:
        status, body = instance.get_json("/api/market-data/prices")
        assert status == 200 and {entry["pair"] for entry in body["prices"]} == set(PAIRS)
        assert all(entry["price"] and not entry["stale"] for entry in body["prices"])

    # What the exchange saw: the planned set, each connection within both limits, no more.
    stats = sim.stats()
    connections = stats["open_connections"]
    assert len(connections) == PLANNED > 1
    assert all(c["streams"] <= 1024 and c["target_length"] <= 8000 for c in connections), connections
    assert sum(c["streams"] for c in connections) == 2 * COUNT
    assert stats["max_concurrent"] == PLANNED and stats["connections_total"] == PLANNED, stats
    upstream = leader_upstream(deployment)
    assert upstream["connections_planned"] == PLANNED and upstream["pairs"] == COUNT
    assert sorted(line["target_length"] for line in upstream["connections"]) == \
        sorted(c["target_length"] for c in connections)
    print(f"\n500 pairs over {PLANNED} connections {[(c['streams'], c['target_length']) for c in connections]}; "
          f"all priced and fresh on every worker {all_priced_after:.1f}s after the first check")


def test_server_shutdown_on_one_connection_replaces_that_one_while_the_others_deliver(deployment, sim):
    everything_live(deployment, sim)
    before = leader_upstream(deployment)
    target = group_of(before, "P250/USDT")
    others = [line for line in before["connections"] if line["index"] != target["index"]]
    elsewhere = [pair for pair in PAIRS if pair < target["first_pair"] or pair > target["last_pair"]][::10][:50]
    total_before = sim.stats()["connections_total"]
    browser = SSEClient(deployment[1].url + "/api/market-data/stream?pairs=" + ",".join(elsewhere))
    try:
        browser.wait_for(lambda c: c.of("price"), 10, "prices of pairs on the other connections")
        shutdown_at = time.time()
        assert sim.fault(fault="shutdown", stream="p250usdt@aggTrade")["affected"] == 1

        def replaced():
            upstream = leader_upstream(deployment)
            line = upstream["connections"][target["index"]]
            return (line["connection"] != target["connection"] and line["connected"]
                    and sim.stats()["connections_open"] == PLANNED and upstream)
        after = wait_until(replaced, 15, message="the announced connection replaced")
        # Only the announced connection was replaced, make-before-break; the others were never touched.
        assert after["connections"][target["index"]]["rotations"] == target["rotations"] + 1
        for line in others:
            now = after["connections"][line["index"]]
            assert now["connection"] == line["connection"] and now["connects"] == line["connects"]
        assert after["reconnects"] == before["reconnects"]
        assert sim.stats()["connections_total"] == total_before + 1
        untouched = [c for c in sim.connections() if c["age"] > time.time() - shutdown_at]
        assert len(untouched) == PLANNED - 1
        # The browser of the other connections' pairs kept getting prices, none of them ever stale.
        browser.wait_for(lambda c: [e for e in c.of("price") if e.received_at > shutdown_at], 10,
                         "prices after the serverShutdown")
        assert not any(set(e.json()["stale"]) & set(elsewhere) for e in browser.of("status"))
    finally:
        browser.close()
    on_every_worker(deployment, lambda h: h["mode"] == "live" and fresh(h, PAIRS), "every pair fresh again")


def test_one_connection_down_makes_exactly_its_pairs_stale_and_the_others_stay_live(deployment, sim):
    everything_live(deployment, sim)
    target = group_of(leader_upstream(deployment), "P250/USDT")
    down = [pair for pair in PAIRS if target["first_pair"] <= pair <= target["last_pair"]]
    up = [pair for pair in PAIRS if pair not in down]
    # The exchange drops that one connection and refuses its handshakes for a while.
    sim.fault(fault="refuse", status=429, duration=4 * STALE_AFTER, retry_after=1)
    assert sim.fault(fault="drop", stream="p250usdt@aggTrade")["affected"] == 1

    def partial(health: dict) -> bool:
        pairs = health["pairs"]
        return (health["mode"] == "live" and health["status"] == "degraded"
                and all(pairs[pair]["stale"] for pair in down) and fresh(health, up))
    on_every_worker(deployment, partial, "exactly the dropped connection's pairs stale", timeout=3 * STALE_AFTER)
    upstream = leader_upstream(deployment)
    assert sorted(upstream["down_pairs"]) == down and not upstream["connected"]
    assert len(sim.stats()["open_connections"]) == PLANNED - 1
    # Once the exchange accepts it again, that connection comes back and its pairs are live again.
    everything_live(deployment, sim)
    assert leader_upstream(deployment)["down_pairs"] == []
