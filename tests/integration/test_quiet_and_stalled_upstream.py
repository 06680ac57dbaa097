"""The real upstream client against a peer that behaves like the real exchange: quiet markets,
serverShutdown without a close, rotation with no trade to wait for, and a peer that stalls.

Over real sockets, the client alone in its own process (tests/support/feed_harness.py).
"""
from __future__ import annotations

import time

import pytest

from tests.integration.test_upstream_faults import assert_no_gap_and_no_duplicate
from tests.support.feed_process import FeedProcess
from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

PAIRS = ["BTC/USD", "ETH/USD"]
SYMBOLS = "BTCUSDT,ETHUSDT"
SILENCE = 1.5


@pytest.fixture
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=40, ping_interval=0.5, pong_timeout=2) as simulator:
        yield simulator


@pytest.fixture
def feed(sim):
    with FeedProcess(sim.ws_url, PAIRS, silence_timeout=SILENCE, probe_timeout=1, backoff_base=0.1,
                     backoff_cap=0.5) as process:
        process.wait_status(lambda s: s["live"], message="first connection")
        process.wait_ticks(5)
        yield process


def quiet_market(sim, feed) -> None:
    """No trade from now on (pings and control replies go on); the client has seen the last one."""
    sim.market(paused=True)
    final = sim.prices()
    wait_until(lambda: {t["symbol"]: t["price"] for t in feed.ticks} == {s: final[s]["price"] for s in final},
               10, message="the last trades before the quiet")


def test_server_shutdown_on_a_quiet_market_leaves_one_connection_within_two_seconds(sim, feed):
    quiet_market(sim, feed)
    sim.reset_stats()
    announced = time.monotonic()
    sim.fault(fault="shutdown", close=False)   # the server announces and leaves the closing to us
    feed.wait_status(lambda s: s["rotations"] >= 1, 2, "the replacement to take over")
    wait_until(lambda: sim.stats()["connections_open"] == 1, max(0.1, 2 - (time.monotonic() - announced)),
               interval=0.02, message="one connection at the exchange within 2 s of serverShutdown")
    stats = sim.stats()
    assert stats["connections_total"] == 1 and stats["max_concurrent"] == 2, stats
    sim.market(paused=False)
    feed.wait_ticks(20)
    status = feed.status
    assert status["reconnects"] == 0 and status["silence_timeouts"] == 0
    assert_no_gap_and_no_duplicate(feed)


def test_server_shutdown_without_close_on_a_trading_market_has_no_gap_and_no_duplicate(sim, feed):
    sim.reset_stats()
    announced = time.monotonic()
    sim.fault(fault="shutdown", close=False)
    wait_until(lambda: feed.status.get("rotations", 0) >= 1 and sim.stats()["connections_open"] == 1, 2,
               interval=0.02, message="one connection within 2 s of serverShutdown")
    assert time.monotonic() - announced < 2
    feed.wait_ticks(20)
    assert sim.stats()["max_concurrent"] == 2 and feed.status["reconnects"] == 0
    assert_no_gap_and_no_duplicate(feed)


def test_rotation_on_a_quiet_market_needs_no_trade():
    with SimulatorProcess(pairs=SYMBOLS, rate=40, ping_interval=0.5) as sim, \
            FeedProcess(sim.ws_url, PAIRS, rotate_after=1.5, silence_timeout=SILENCE, probe_timeout=1,
                        backoff_base=0.1) as feed:
        feed.wait_status(lambda s: s["live"], message="first connection")
        feed.wait_ticks(5)
        quiet_market(sim, feed)
        sim.reset_stats()
        rotations = feed.status["rotations"]
        feed.wait_status(lambda s: s["rotations"] >= rotations + 3, 15, "three rotations without a trade")
        wait_until(lambda: sim.stats()["connections_open"] == 1, 2, message="one connection after rotating")
        stats = sim.stats()
        assert stats["max_concurrent"] == 2 and stats["rate_limit_closes"] == 0
        assert feed.status["reconnects"] == 0 and feed.status["silence_timeouts"] == 0
        sim.market(paused=False)
        feed.wait_ticks(20)
        assert_no_gap_and_no_duplicate(feed)


def test_a_stalled_connection_is_still_replaced(sim, feed):
    before = feed.status["connects"]
    stalled = time.monotonic()
    sim.fault(fault="stall", duration=4)   # no data, no control replies, no pings
    feed.wait_status(lambda s: s["silence_timeouts"] >= 1, 10, "the stall detected")
    # Within the silence timeout plus the probe timeout (and a supervisor tick).
    assert time.monotonic() - stalled < SILENCE + 1 + 1.0
    feed.wait_status(lambda s: s["connects"] > before and s["live"], 15, "a new connection")
    feed.wait_ticks(5, timeout=15)


def test_a_quiet_market_for_three_silence_timeouts_is_neither_replaced_nor_stale(sim):
    """Through the service (one gunicorn worker, no Redis): the page keeps its prices current."""
    env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url, "PRICEFEED_PAIRS": ",".join(PAIRS),
           "PRICEFEED_UPSTREAM_SILENCE_TIMEOUT": str(SILENCE), "PRICEFEED_STALE_AFTER": "2",
           "PRICEFEED_UPSTREAM_PROBE_TIMEOUT": "1", "PRICEFEED_HEARTBEAT_INTERVAL": "1"}
    with GunicornProcess(workers=1, env=env) as app:
        wait_until(lambda: app.health()["mode"] == "live" and len(app.prices()) == 2, 20, message="live")
        client = SSEClient(app.url + "/api/market-data/stream")
        try:
            client.wait_for(lambda c: c.of("snapshot"), 10, "snapshot")
            sim.market(paused=True)
            sim.reset_stats()
            quiet_from = time.monotonic()
            health = app.health()
            while time.monotonic() - quiet_from < 3 * SILENCE:
                health = app.health()
                assert health["mode"] == "live", health["mode"]
                assert not any(p["stale"] for p in health["pairs"].values()), health["pairs"]
                time.sleep(0.2)
            upstream = health["upstream"]
            assert upstream["reconnects"] == 0 and upstream["silence_timeouts"] == 0 and upstream["connects"] == 1
            assert upstream["probes_answered"] >= 2, "the quiet connection was never asked"
            budget = upstream["host_attempt_budget"]
            assert budget["scope"] == "host" and budget["attempts_last_5min"] >= 1 and budget["errors"] == 0
            assert sim.stats()["connections_total"] == 0 and sim.stats()["pings_sent"] >= 4
            statuses = [e.json() for e in client.of("status")]
            assert all(s["mode"] == "live" and not s["stale"] for s in statuses), statuses
        finally:
            client.close()
