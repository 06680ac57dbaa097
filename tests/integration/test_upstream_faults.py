"""The real upstream client against the simulator over real sockets: every fault is recovered from.

The client runs alone in its own gevent-patched process (tests/support/feed_harness.py)
and prints every trade it emits with the exchange's trade id, so gaps and
duplicates are visible exactly.
"""
from __future__ import annotations

import time
from collections import defaultdict

import pytest

from tests.support.feed_process import FeedProcess
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until

PAIRS = ["BTC/USD", "ETH/USD"]
SYMBOLS = "BTCUSDT,ETHUSDT"


def trade_ids(feed: FeedProcess) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = defaultdict(list)
    for tick in feed.ticks:
        if tick["trade_id"] is not None:
            ids[tick["symbol"]].append(tick["trade_id"])
    return ids


def assert_no_gap_and_no_duplicate(feed: FeedProcess) -> None:
    for symbol, ids in trade_ids(feed).items():
        assert len(ids) == len(set(ids)), f"{symbol}: duplicate trades emitted"
        assert ids == list(range(ids[0], ids[0] + len(ids))), f"{symbol}: gap in trade ids {ids}"


def recovers(feed: FeedProcess, connects_before: int, timeout: float = 15) -> None:
    """Connected again on a newer connection, and new ticks flow."""
    feed.wait_status(lambda s: s["connects"] > connects_before and s["live"], timeout, "reconnect")
    feed.wait_ticks(5, timeout)


@pytest.fixture
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=40, ping_interval=0.5, pong_timeout=2) as simulator:
        yield simulator


@pytest.fixture
def feed(sim):
    with FeedProcess(sim.ws_url, PAIRS, silence_timeout=1.5, backoff_base=0.1, backoff_cap=0.5) as process:
        process.wait_status(lambda s: s["live"], message="first connection")
        process.wait_ticks(5)
        yield process


def test_prices_are_the_exchanges_decimal_strings_and_labelled_simulated(sim, feed):
    sim.market(paused=True)
    final = sim.prices()
    wait_until(lambda: {t["symbol"]: t["price"] for t in feed.ticks} == {s: final[s]["price"] for s in final},
               10, message="client to hold the simulator's final prices")
    assert all(t["source"] == "simulator" for t in feed.ticks)
    assert_no_gap_and_no_duplicate(feed)


def test_a_client_that_answers_every_ping_is_never_dropped(sim, feed):
    sim.reset_stats()
    started = time.monotonic()
    wait_until(lambda: sim.stats()["pings_sent"] >= 6, 10, message="six pings")
    stats = sim.stats()
    assert feed.status["connects"] == 1, "the connection was dropped although we pong"
    assert stats.get("closes_1008", 0) == 0
    # Exactly one pong per ping: never more (each pong counts against 5 msgs/s).
    assert stats["pongs_received"] <= stats["pings_sent"]
    assert stats["pongs_received"] >= stats["pings_sent"] - 1
    assert time.monotonic() - started < 10


def test_dropped_connection_is_replaced(sim, feed):
    before = feed.status["connects"]
    sim.fault(fault="drop")
    recovers(feed, before)
    assert_no_gap_and_no_duplicate_after_reset(feed)


def assert_no_gap_and_no_duplicate_after_reset(feed: FeedProcess) -> None:
    # A drop loses what the exchange sent meanwhile (that is the exchange's gap, not ours),
    # but the client must never emit the same trade twice.
    for symbol, ids in trade_ids(feed).items():
        assert len(ids) == len(set(ids)), f"{symbol}: duplicate trades emitted"


def test_silent_connection_is_replaced_by_the_data_watchdog(sim, feed):
    before = feed.status["connects"]
    sim.fault(fault="silence", duration=4)
    feed.wait_status(lambda s: s["silence_timeouts"] >= 1, 10, "silence detected")
    recovers(feed, before)


def test_connection_dropped_for_missing_pongs_is_replaced(sim, feed):
    before = feed.status["connects"]
    sim.fault(fault="ignore_pongs", duration=3)
    recovers(feed, before, timeout=20)


def test_malformed_frames_are_counted_and_skipped_without_dropping_the_connection(sim, feed):
    sim.fault(fault="malformed", count=12)
    feed.wait_status(lambda s: s["malformed"] >= 10, 10, "malformed frames counted")
    feed.wait_ticks(10)
    assert feed.status["connects"] == 1
    assert_no_gap_and_no_duplicate(feed)


@pytest.mark.parametrize("status", [429, 418])
def test_refused_handshakes_are_retried_after_retry_after_without_hammering(sim, feed, status):
    before = feed.status["connects"]
    sim.fault(fault="refuse", status=status, count=2, retry_after=1)
    dropped_at = time.monotonic()
    sim.fault(fault="drop")
    recovers(feed, before, timeout=20)
    assert feed.status["handshake_refusals"] == 2
    assert sim.stats()["handshakes_refused"] == 2
    # The server asked for a second between attempts: two refusals then success take >= 1 s.
    assert time.monotonic() - dropped_at >= 1.0


def test_close_1008_is_recovered_from(sim, feed):
    before = feed.status["connects"]
    sim.fault(fault="close", code=1008, reason="Too many requests")
    recovers(feed, before)
    assert "1008" in feed.status["last_error"]


def test_server_shutdown_switches_connections_make_before_break(sim, feed):
    sim.reset_stats()
    sim.fault(fault="shutdown")
    feed.wait_status(lambda s: s["rotations"] >= 1, 10, "replacement after serverShutdown")
    feed.wait_ticks(20)
    assert sim.stats()["max_concurrent"] == 2, "the new connection was not open before the old closed"
    assert_no_gap_and_no_duplicate(feed)


def test_lifetime_expiry_by_the_server_is_recovered_from():
    with SimulatorProcess(pairs=SYMBOLS, rate=40, max_lifetime=2) as sim, \
            FeedProcess(sim.ws_url, PAIRS, rotate_after=3600, backoff_base=0.1) as feed:
        feed.wait_status(lambda s: s["live"], message="first connection")
        recovers(feed, 1, timeout=15)


def test_rotation_before_the_lifetime_limit_has_no_gap_and_no_duplicate():
    with SimulatorProcess(pairs=SYMBOLS, rate=40, max_lifetime=4) as sim, \
            FeedProcess(sim.ws_url, PAIRS, rotate_after=1.5, backoff_base=0.1) as feed:
        feed.wait_status(lambda s: s["rotations"] >= 3, 20, "three rotations")
        feed.wait_ticks(20)
        status = feed.status
        assert status["reconnects"] == 0, "a rotation fell back to a plain reconnect"
        assert status["duplicates_dropped"] > 0, "no overlap: the old connection closed before the new delivered"
        assert_no_gap_and_no_duplicate(feed)
        assert sim.stats()["max_concurrent"] == 2


def test_a_refused_replacement_is_retried_and_still_makes_before_it_breaks(sim, feed):
    """serverShutdown, and the first replacement handshake is refused: the old connection
    keeps delivering during the grace period while the replacement is retried."""
    sim.reset_stats()
    sim.fault(fault="refuse", status=429, count=1, retry_after=1)
    sim.fault(fault="shutdown")
    feed.wait_status(lambda s: s["rotations"] >= 1, 10, "replacement after one refusal")
    feed.wait_ticks(20)
    assert sim.stats()["handshakes_refused"] == 1
    assert feed.status["reconnects"] == 0
    assert_no_gap_and_no_duplicate(feed)
