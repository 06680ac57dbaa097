"""The REST poller against the simulator over real sockets: exact prices with the exchange's own
time, one call for every symbol, only TRADING symbols, and every limit honoured.

The poller runs in this process with gevent imported but not monkey-patched:
each test drives `poll_once()` itself, so urllib's blocking calls are fine; the
`start()` test waits with `gevent.sleep` so the polling greenlet gets to run.
"""
from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator

import gevent
import pytest

from pricefeed.breakers import new_breaker
from pricefeed.exchange.rest import RestPoller
from pricefeed.pairs import PairCatalog
from pricefeed.ticks import PriceTick
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until

PAIRS = ["BTC/USD", "ETH/USD"]


class Clock:
    """A monotonic clock the test moves by hand (only the poller's own pacing reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim() -> Iterator[SimulatorProcess]:
    """A simulator whose market has traded both pairs and is now paused: prices hold still."""
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=20) as sim:
        wait_until(lambda: set(sim.prices()) == {"BTCUSDT", "ETHUSDT"}, timeout=10,
                   message="a trade on both pairs")
        sim.market(paused=True)
        yield sim


def poller_for(url: str, ticks: list[PriceTick], pairs: list[str] = PAIRS, **options) -> RestPoller:
    return RestPoller(url, PairCatalog(pairs), ticks.append, **options)


def rest_requests(sim: SimulatorProcess) -> int:
    return sim.stats()["rest_requests"]


def exchange_prices(sim: SimulatorProcess) -> dict[str, str]:
    return {symbol: row["price"] for symbol, row in sim.prices().items()}


def test_polled_prices_are_the_exchange_prices_with_the_exchange_time_and_source_rest(sim):
    ticks: list[PriceTick] = []
    poller = poller_for(sim.http_url, ticks)
    received_from_ms = time.time_ns() // 1_000_000

    assert poller.poll_once() == 2

    assert {t.symbol: t.price for t in ticks} == exchange_prices(sim)
    assert {(t.pair, t.symbol) for t in ticks} == {("BTC/USD", "BTCUSDT"), ("ETH/USD", "ETHUSDT")}
    # The exchange's own time for each price (closeTime: its last trade), never when we received it.
    last_trades = sim.prices()
    assert {t.symbol: t.ts for t in ticks} == {symbol: row["ts"] for symbol, row in last_trades.items()}
    assert all(t.ts < received_from_ms for t in ticks)          # the market has been paused since
    assert all(t.source == "rest" and t.open24h is not None for t in ticks)
    assert rest_requests(sim) == 1
    status = poller.status()
    assert status["polls"] == 1 and status["failures"] == 0 and status["malformed"] == 0
    assert status["weight_used_last_minute"] == 80
    assert status["server_used_weight_1m"] == 80      # the simulator charged the all-symbols weight


def test_one_call_for_every_symbol_so_a_pair_the_exchange_does_not_list_fails_nothing(sim):
    ticks: list[PriceTick] = []
    poller = poller_for(sim.http_url, ticks, pairs=["ETH/USD", "DOGE/USD", "BTC/USD"])

    assert poller.poll_once() == 2

    assert {t.pair: t.price for t in ticks} == {"ETH/USD": exchange_prices(sim)["ETHUSDT"],
                                                "BTC/USD": exchange_prices(sim)["BTCUSDT"]}
    assert "symbols=" not in poller.url and "symbol=" not in poller.url
    assert poller.status()["failures"] == 0


def test_a_symbol_not_trading_is_never_published_from_rest(sim):
    ticks: list[PriceTick] = []
    sim.list_symbol("ETHUSDT", "HALT")
    try:
        poller = poller_for(sim.http_url, ticks)
        assert poller.poll_once() == 1               # symbolStatus=TRADING: the exchange leaves it out
        assert [t.symbol for t in ticks] == ["BTCUSDT"]
    finally:
        sim.list_symbol("ETHUSDT", "TRADING")
    # And if the exchange ignored symbolStatus, the catalogue's status still leaves it out.
    ticks.clear()
    poller = poller_for(sim.http_url, ticks, is_trading=lambda symbol: symbol != "ETHUSDT")
    assert poller.poll_once() == 1 and [t.symbol for t in ticks] == ["BTCUSDT"]
    assert poller.status()["left_out_not_trading"] == 1


def test_a_price_that_has_not_changed_is_not_published_again(sim):
    ticks: list[PriceTick] = []
    poller = poller_for(sim.http_url, ticks)
    poller.poll_once()
    first = exchange_prices(sim)

    assert poller.poll_once() == 0
    assert len(ticks) == 2

    sim.market(paused=False)
    wait_until(lambda: exchange_prices(sim) != first, timeout=10, message="a price to move")
    sim.market(paused=True)
    moved = {symbol: price for symbol, price in exchange_prices(sim).items() if price != first[symbol]}

    assert poller.poll_once() == len(moved)
    assert {t.symbol: t.price for t in ticks[2:]} == moved
    assert rest_requests(sim) == 3


@pytest.mark.parametrize("status", [429, 418])
def test_retry_after_stops_every_request_until_it_has_passed(sim, caplog, status):
    ticks: list[PriceTick] = []
    poller = poller_for(sim.http_url, ticks)
    sim.fault(fault="rest", status=status, duration=1, retry_after=2)
    refused_at = time.monotonic()

    assert poller.poll_once() == 0
    assert rest_requests(sim) == 1
    assert 1.0 < poller.status()["blocked_until_s"] <= 2

    while poller.status()["blocked_until_s"] is not None:
        assert poller.poll_once() == 0
        assert rest_requests(sim) == 1, "a request was sent before Retry-After passed"
        assert time.monotonic() - refused_at < 5, "still blocked long after Retry-After"
        time.sleep(0.1)
    assert time.monotonic() - refused_at >= 1.9

    assert poller.poll_once() == 2                    # the fault has expired: polling resumes
    assert rest_requests(sim) == 2
    assert {t.symbol: t.price for t in ticks} == exchange_prices(sim)
    errors = [r for r in caplog.records if r.name == "pricefeed.exchange.rest" and r.levelno >= logging.ERROR]
    assert bool(errors) == (status == 418)
    assert poller.status()["failures"] == 1


def test_451_is_a_region_block_that_names_both_urls_and_pauses_a_retry_interval(sim, caplog):
    poller = poller_for(sim.http_url, [])
    sim.fault(fault="rest", status=451, duration=60)

    for _ in range(5):
        poller.poll_once()

    assert rest_requests(sim) == 1
    assert poller.status()["blocked_until_s"] > 55
    assert "HTTP 451" in poller.status()["last_error"]
    assert poller.access.current() == "region_not_served"
    assert any("PRICEFEED_UPSTREAM_URL and PRICEFEED_REST_URL" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)


def test_the_weight_budget_caps_requests_in_any_60_seconds(sim):
    clock = Clock()
    poller = poller_for(sim.http_url, [], weight_budget_per_minute=160, clock=clock)

    for _ in range(6):
        poller.poll_once()
        clock.now += 2
    assert rest_requests(sim) == 2                    # 2 polls x weight 80 = the budget of 160
    assert poller.status()["weight_used_last_minute"] == 160
    assert poller.interval == 30                      # spaced so the budget lasts the minute

    clock.now += 49                                   # the first poll is now 61 s old
    poller.poll_once()
    poller.poll_once()
    assert rest_requests(sim) == 3
    assert poller.status()["polls"] == 3


def test_the_breaker_opens_after_repeated_500s_and_then_fails_fast_without_a_request(sim):
    breaker = new_breaker("rest", fail_max=3, reset_timeout=60)
    poller = poller_for(sim.http_url, [], breaker=breaker)
    sim.fault(fault="rest", status=500, duration=60)

    for _ in range(3):
        assert poller.poll_once() == 0
    assert rest_requests(sim) == 3
    assert breaker.current_state == "open"

    for _ in range(10):
        assert poller.poll_once() == 0
    assert rest_requests(sim) == 3
    status = poller.status()
    assert status["polls"] == 3 and status["failures"] == 3
    assert "breaker rest open" in status["last_error"]


def test_start_polls_every_interval_until_stop(sim):
    ticks: list[PriceTick] = []
    poller = poller_for(sim.http_url, ticks, interval=0.2, weight_budget_per_minute=100_000)
    sim.market(paused=False)

    def wait(condition, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {message}"
            gevent.sleep(0.05)

    poller.start()
    try:
        assert poller.status()["running"]
        wait(lambda: rest_requests(sim) >= 5, 5, "five polls")
    finally:
        poller.stop()
    wait(lambda: not poller.status()["running"], 2, "the poller to stop")
    stopped_at = rest_requests(sim)
    gevent.sleep(0.6)                                 # three intervals: no poll may happen
    assert rest_requests(sim) == stopped_at
    assert len(ticks) > 2                             # the market moved and each change was published


# -- what the simulator cannot send: a local stub exchange -------------------------------


class StubExchange:
    """A one-endpoint HTTP server on loopback answering with the body and headers a test sets."""

    def __init__(self) -> None:
        self.body = b"[]"
        self.headers: dict[str, str] = {}
        self.requests = 0
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(stub.body)))
                for name, value in stub.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(stub.body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubExchange]:
    stub = StubExchange()
    yield stub
    stub.close()


def test_malformed_bodies_and_prices_are_counted_and_skipped_never_guessed(stub):
    ticks: list[PriceTick] = []
    poller = poller_for(stub.url, ticks)

    stub.body = b'[{"symbol":"BTCUSDT","lastPrice":"43250.1'        # cut short
    assert poller.poll_once() == 0
    stub.body = b'{"code":-1121,"msg":"Invalid symbol."'     # not JSON either
    assert poller.poll_once() == 0
    assert poller.status()["malformed"] == 2
    assert poller.status()["failures"] == 2

    at = time.time_ns() // 1_000_000
    stub.body = json.dumps([
        {"symbol": "BTCUSDT", "lastPrice": 43250.12, "closeTime": at},     # a number, not the exchange's string
        {"symbol": "BTCUSDT", "lastPrice": "4.3e4", "closeTime": at},
        {"symbol": "BTCUSDT", "lastPrice": "43250.12\n", "closeTime": at},
        {"symbol": "BTCUSDT", "lastPrice": " 43250.12", "closeTime": at},
        {"symbol": "BTCUSDT", "lastPrice": "43250.", "closeTime": at},
        {"symbol": "BTCUSDT", "lastPrice": "NaN", "closeTime": at},
        {"symbol": "BTCUSDT", "lastPrice": None, "closeTime": at},
        {"symbol": "BTCUSDT", "closeTime": at},
        {"symbol": "BTCUSDT", "lastPrice": "43250.12000000"},              # no time: never the receive time
        {"symbol": "BTCUSDT", "lastPrice": "43250.12000000", "closeTime": "soon"},
        {"lastPrice": "43250.12000000", "closeTime": at},                  # no symbol: not ours
        ["BTCUSDT", "43250.12000000"],
        {"symbol": "DOGEUSDT", "lastPrice": "0.08000000", "closeTime": at},   # well-formed, not served: ignored
        {"symbol": "ETHUSDT", "lastPrice": "2301.50000000", "openPrice": "2290.00000000", "closeTime": at},
    ]).encode()
    assert poller.poll_once() == 1

    assert [(t.symbol, t.price, t.ts, t.open24h) for t in ticks] == [("ETHUSDT", "2301.50000000", at, "2290.00000000")]
    assert poller.status()["malformed"] == 2 + 10
    assert poller.status()["failures"] == 2


def test_the_ip_using_over_half_its_weight_pauses_polling(stub):
    poller = poller_for(stub.url, [])
    stub.body = b'[{"symbol":"BTCUSDT","lastPrice":"43250.12000000","closeTime":1700000000000}]'
    stub.headers = {"X-MBX-USED-WEIGHT-1M": "3500"}

    poller.poll_once()
    for _ in range(5):
        poller.poll_once()

    assert stub.requests == 1
    assert poller.status()["server_used_weight_1m"] == 3500
