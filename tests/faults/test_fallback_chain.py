"""The fallback chain under the faults that trigger each level (real processes, real faults).

Each test states the fault and the mode sequence browsers must be told, and
asserts what users would observe: no worker crashed, no client of a healthy
worker was disconnected, every client ends on the exchange's final prices once
the fault is over. bench/faults.py repeats these to measure detection and
recovery times.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.deployment import ONE_ADDRESS_LOAD, PAIRS, SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.observe import mode_sequence, rss_kib
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

STREAM = f"/api/market-data/stream?pairs={PAIRS}"
HEALTH = "/api/market-data/health"


def final_prices(sim) -> dict[str, str]:
    prices = sim.prices()
    return {pair: prices[symbol]["price"] for pair, symbol in zip(PAIRS.split(","), SYMBOLS.split(","), strict=True)}


def converge(sim, clients: list[SSEClient], timeout: float = 15) -> None:
    """Once every pair has ticked again, pause the exchange; every client must then hold its final prices.

    The exchange does not resend trades made during an outage: "recovered" means each
    pair has had a fresh tick (or the exchange's miniTicker repair) since.
    """
    since_ms = int(time.time() * 1000)
    pairs = set(PAIRS.split(","))
    for client in clients:
        client.wait_for(lambda c: {e.json()["pair"] for e in c.of("price") if e.json()["ts"] >= since_ms} == pairs,
                        20, "a fresh tick of every pair")
    sim.market(paused=True)
    final = final_prices(sim)
    for client in clients:
        client.wait_for(lambda c: c.latest_prices() == final, timeout,
                        f"final prices {final}, client has {client.latest_prices()}")


def streams(app: GunicornProcess, count: int) -> list[SSEClient]:
    """`count` open streams, each already holding a price for every pair (so a fault finds a full table)."""
    clients = [SSEClient(app.url + STREAM) for _ in range(count)]
    pairs = set(PAIRS.split(","))
    for client in clients:
        client.wait_for(lambda c: set(c.latest_prices()) == pairs, 15, "a price for every pair")
    return clients


def ticks_from_now(clients: list[SSEClient], count: int = 3, timeout: float = 20) -> None:
    marks = [len(c.of("price")) for c in clients]
    for client, mark in zip(clients, marks, strict=True):
        client.wait_for(lambda c: len(c.of("price")) >= mark + count, timeout, "fresh ticks")


def health_ms(app: GunicornProcess) -> float:
    started = time.monotonic()
    status, _ = app.get(HEALTH, timeout=5)
    assert status in (200, 503)
    return (time.monotonic() - started) * 1000


@contextmanager
def service(env: dict[str, str], workers: int) -> Iterator[tuple[GunicornProcess, list[SSEClient]]]:
    """A running gunicorn instance and a list for the streams the test opens on it.

    On exit every stream is closed, the instance stopped, and its log printed
    (pytest shows printed output only for a failed test).
    """
    app = GunicornProcess(workers=workers, env=env)
    clients: list[SSEClient] = []
    try:
        yield app, clients
    finally:
        for client in clients:
            client.close()
        app.stop()
        print(app.output())


@pytest.fixture
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=10) as simulator:
        yield simulator


def redis_outage_goes_local_and_back(sim, break_redis, mend_redis, while_broken=lambda app: None) -> None:
    """The scenario both Redis faults share. Modes every browser is told: live → local → live.

    During the outage each worker serves its own clients from its own exchange
    connection; afterwards there is one upstream connection again, every client is
    still connected, no worker crashed, and every client holds the final prices.
    """
    with RedisServer() as redis_server, \
            service(instance_env(sim, redis_server.url, new_prefix()), workers=2) as (app, clients):
        all_live([app])
        workers = app.worker_pids()
        clients += streams(app, 6)
        break_redis(redis_server)
        for client in clients:
            client.wait_for(lambda c: "local" in mode_sequence(c), 20, "the local tier")
        while_broken(app)
        ticks_from_now(clients)           # the local tier delivers fresh ticks
        mend_redis(redis_server)
        for client in clients:
            client.wait_for(lambda c: mode_sequence(c)[-1] == "live" and len(mode_sequence(c)) >= 3, 30,
                            "back to live")
        wait_until(lambda: sim.stats()["connections_open"] == 1, 20, message="one upstream connection again")
        converge(sim, clients)
        for client in clients:
            assert mode_sequence(client) == ["live", "local", "live"], mode_sequence(client)
            assert not client.closed, "a client was disconnected"
        assert app.worker_pids() == workers, "a worker crashed"


def test_redis_killed_and_restarted_goes_local_then_rejoins_a_single_upstream(sim):
    """Fault: kill -9 of Redis, then a restart with no data (epochs must not restart below the seen ones)."""
    redis_outage_goes_local_and_back(sim, RedisServer.kill, RedisServer.restart)


def test_redis_frozen_goes_local_and_health_still_answers_at_once(sim):
    """Fault: redis-server SIGSTOPped (connections hang, nothing errors)."""
    def health_answers_and_shows_the_open_breaker(app):
        slowest = max(health_ms(app) for _ in range(10))
        # /health never waits on Redis (bench/faults.py reports the distribution; 100 ms is the goal).
        assert slowest < 1000, f"/health took {slowest:.0f} ms while Redis was frozen"
        wait_until(lambda: app.health()["breakers"]["redis_lease"]["state"] in ("open", "half-open"), 10,
                   message="the Redis lease breaker open")
    redis_outage_goes_local_and_back(sim, RedisServer.freeze, RedisServer.thaw,
                                     health_answers_and_shows_the_open_breaker)


def test_exchange_unreachable_serves_redis_prices_then_rest_then_live_again(sim):
    """Fault: the WebSocket refuses every handshake (429) for a while. Modes: live → redis → live.
    Meanwhile the leader polls REST within its budget and those prices say source "rest"."""
    with RedisServer() as redis_server:
        with service(instance_env(sim, redis_server.url, new_prefix()), workers=2) as (app, clients):
            all_live([app])
            clients += streams(app, 4)
            sim.fault(fault="refuse", status=429, duration=12, retry_after=1)
            sim.fault(fault="drop")
            for client in clients:
                client.wait_for(lambda c: "redis" in mode_sequence(c), 15, "redis mode")
            for client in clients:
                client.wait_for(lambda c: any(e.json()["source"] == "rest" for e in c.of("price")), 20,
                                "REST-polled prices")
            for client in clients:
                client.wait_for(lambda c: mode_sequence(c)[-1] == "live" and len(mode_sequence(c)) >= 3, 30,
                                "live again")
            converge(sim, clients)
            for client in clients:
                assert mode_sequence(client) == ["live", "redis", "live"], mode_sequence(client)
                assert not client.closed
            rest_requests = sim.stats()["rest_requests"]
            assert 0 < rest_requests < 60, f"{rest_requests} REST requests: outside the weight budget"


def test_exchange_and_rest_both_down_is_an_honest_degraded_mode(sim):
    """Fault: WebSocket refused and REST failing (no Redis). Modes: live → degraded → live.
    Prices stay the last real ones, flagged stale; nothing is invented."""
    with service({"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url,
                                          "PRICEFEED_PAIRS": PAIRS, "PRICEFEED_STALE_AFTER": "3",
                                          # Production backoff (cap 30 s, full jitter) after a ban could
                                          # take most of a minute to come back; the test needs less.
                                          "PRICEFEED_UPSTREAM_BACKOFF_CAP": "2"}, workers=1) as (app, clients):
        all_live([app])
        clients += streams(app, 3)
        before = clients[0].latest_prices()
        # Long enough for three failed REST polls while the WebSocket is down: the one call for
        # every symbol weighs 80, so the weight budget spaces polls 8 s apart (request_weight.py).
        sim.fault(fault="rest", status=500, duration=45)
        sim.fault(fault="refuse", status=418, duration=30, retry_after=2)
        sim.fault(fault="drop")
        for client in clients:
            client.wait_for(lambda c: "degraded" in mode_sequence(c), 15, "degraded")
        stale = wait_until(lambda: next((e.json() for c in clients for e in c.of("status")
                                         if len(e.json()["stale"]) == 3), None), 10, message="stale flags")
        assert stale["mode"] == "degraded"
        wait_until(lambda: app.health()["breakers"]["rest"]["state"] in ("open", "half-open"), 40,
                   message="REST breaker open")
        health = app.health()
        assert health["status"] == "degraded" and all(p["stale"] for p in health["pairs"].values())
        assert {p: v["price"] for p, v in health["pairs"].items()} == clients[0].latest_prices()
        assert all(e.json()["source"] != "rest" for c in clients for e in c.of("price"))
        assert before.keys() == clients[0].latest_prices().keys()
        for client in clients:
            client.wait_for(lambda c: mode_sequence(c)[-1] == "live" and len(mode_sequence(c)) >= 3, 60,
                            "live again")
        converge(sim, clients)
        for client in clients:
            assert mode_sequence(client) == ["live", "degraded", "live"], mode_sequence(client)
            assert not client.closed


@pytest.mark.parametrize("fault", [
    {"fault": "drop"},
    {"fault": "silence", "duration": 3},
    {"fault": "ignore_pongs", "duration": 3},
    {"fault": "malformed", "count": 20},
    {"fault": "close", "code": 1008, "reason": "Too many requests"},
    {"fault": "shutdown"},
    {"fault": "refuse", "status": 429, "count": 2, "retry_after": 1},
])
def test_upstream_faults_through_the_service_keep_every_client_connected(fault):
    """Fault: one upstream fault on the leader's exchange connection. Every client stays
    connected, no worker crashes, and prices converge once the exchange is quiet."""
    with SimulatorProcess(pairs=SYMBOLS, rate=10, ping_interval=0.5, pong_timeout=2) as sim, RedisServer() as rs:
        with service(instance_env(sim, rs.url, new_prefix(),
                                                          PRICEFEED_UPSTREAM_SILENCE_TIMEOUT="1.5"), workers=2) as (app, clients):
            all_live([app])
            workers = app.worker_pids()
            clients += streams(app, 4)
            sim.fault(**fault)
            if fault["fault"] == "refuse":
                sim.fault(fault="drop")
            ticks_from_now(clients, 5, timeout=30)
            for client in clients:
                client.wait_for(lambda c: mode_sequence(c)[-1] == "live", 10, "live after the fault")
            # Checked before converge(): a paused exchange sends nothing, and with this test's
            # 1.5 s data watchdog the service rightly stops calling that live.
            converge(sim, clients)
            for client in clients:
                assert not client.closed
            assert app.worker_pids() == workers


def test_a_thousand_clients_that_never_read_do_not_slow_or_starve_the_others(sim):
    """Fault: 1,000 streams that never read a byte beside 100 normal ones (one worker, no Redis).
    The normal clients keep up and converge; the worker's memory stays bounded."""
    env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": PAIRS, "PRICEFEED_MAX_CLIENTS": "1500",
           "PRICEFEED_WORKER_CONNECTIONS": "2000", "PRICEFEED_WRITE_TIMEOUT": "10", **ONE_ADDRESS_LOAD}
    stuck: list[socket.socket] = []
    with service(env, workers=1) as (app, clients):
        try:
            all_live([app])
            worker = app.worker_pids()[0]
            clients += streams(app, 100)
            rss_before = rss_kib(worker)
            request = f"GET {STREAM} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            for _ in range(1000):
                sock = socket.create_connection(("127.0.0.1", app.port))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(request)
                stuck.append(sock)
            wait_until(lambda: app.health()["clients"]["clients"] >= 1000, 30, message="1,000 stuck streams held")
            sim.market(rate=100)                 # push hard so the stuck sockets' buffers fill
            ticks_from_now(clients, 50, timeout=30)
            rss_after = rss_kib(worker)
            sim.market(rate=10)
            converge(sim, clients)
            assert all(not c.closed for c in clients)
            assert app.worker_pids() == [worker]
            # Conflation: a stuck client holds at most one frame per pair, not a queue.
            assert rss_after - rss_before < 60 * 1024, f"RSS grew {rss_after - rss_before} KiB"
        finally:
            for sock in stuck:
                sock.close()


def test_a_leader_whose_hub_is_blocked_past_the_renew_deadline_demotes_itself(sim):
    """Fault: the leader worker's gevent hub blocked for 3 s (> 1.5 s renew deadline, > 2 s TTL).
    Modes: live throughout for clients elsewhere; no tick of the old epoch after a newer one."""
    with RedisServer() as redis_server:
        env = instance_env(sim, redis_server.url, new_prefix(), PRICEFEED_FAULT_INJECTION="true")
        a, b = GunicornProcess(workers=1, env=env), GunicornProcess(workers=1, env=env)
        clients = []
        try:
            all_live([a, b])
            leader, other = (a, b) if a.health()["worker"]["role"] == "leader" else (b, a)
            clients = streams(other, 3) + streams(leader, 3)
            clients[0].wait_for(lambda c: c.of("price"), 10, "a price event")
            old_epoch = int(clients[0].of("price")[-1].required_id().split("-")[0])
            worker = leader.health()["worker"]["id"]
            status, body = leader.get(f"/api/market-data/_fault/block-hub?seconds=3&worker={worker}",
                                      method="POST", timeout=10)
            assert status == 200, body
            for client in clients:
                client.wait_for(lambda c: any(int(e.id.split("-")[0]) > old_epoch for e in c.of("price")), 15,
                                "ticks of the new leader")
            assert other.health()["worker"]["role"] == "leader"
            assert "lost" in leader.output()
            converge(sim, clients)
            for client in clients:
                epochs = [int(e.required_id().split("-")[0]) for e in client.of("price")]
                assert epochs == sorted(epochs), "an old-epoch tick arrived after a newer one"
                assert not client.closed
            wait_until(lambda: sim.stats()["connections_open"] == 1, 10, message="one upstream connection")
        finally:
            for client in clients:
                client.close()
            a.stop()
            b.stop()
