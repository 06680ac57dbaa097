"""The exchange's own catalogue, against the simulator over real sockets, as a browser sees it.

gunicorn (two gevent workers, no Redis) in front of a simulator that lists a Binance.US-like
catalogue: BTCUSD beside BTCUSDT, ETHUSDT but no ETHUSD, SOLUSDT but no SOL/EUR. Configured:

    BTC/USD   listed under its own name        -> BTCUSD, never BTCUSDT
    ETH/USD   not listed; the stable alias is   -> ETHUSDT, every entry says symbol and quote
    SOL/EUR   not listed at all                 -> unlisted: never live, the log names SOL/USDT
    XRP/USDT  listed, then halted in the test   -> halted: never fresh, live feed or REST
"""
from __future__ import annotations

import json
import time

import pytest
import websocket

from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

PAIRS = "BTC/USD,ETH/USD,SOL/EUR,XRP/USDT"
SYMBOLS = "BTCUSD,BTCUSDT,ETHUSDT,SOLUSDT,XRPUSDT"
API = "/api/market-data"


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=40, rest_weight_limit=1200) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def app(sim):
    env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url, "PRICEFEED_PAIRS": PAIRS,
           "PRICEFEED_CATALOGUE_REFRESH": "5", "PRICEFEED_HEARTBEAT_INTERVAL": "1",
           "PRICEFEED_STALE_AFTER": "3", "PRICEFEED_MAX_CLIENTS": "100"}
    with GunicornProcess(workers=2, env=env) as server:
        wait_until(lambda: every_worker(server, lambda h: h["pairs"]["BTC/USD"]["symbol"] == "BTCUSD"
                                        and h["pairs"]["BTC/USD"]["status"] == "live"), 30,
                   message="every worker to trade BTC/USD as BTCUSD, live")
        yield server


@pytest.fixture
def market(sim):
    sim.market(paused=False)
    yield sim
    sim.market(paused=False)
    sim.list_symbol("XRPUSDT", "TRADING")
    sim.fault(fault="clear")


def every_worker(server: GunicornProcess, check, rounds: int = 8) -> bool:
    """`check` holds on /health from each worker (a few reads land on both)."""
    return all(check(server.health()) for _ in range(rounds))


def prices(server: GunicornProcess, pairs: str = PAIRS) -> dict:
    return server.get_json(f"{API}/prices?pairs={pairs}")[1]


def by_pair(body: dict) -> dict[str, dict]:
    return {entry["pair"]: entry for entry in body["prices"]}


def test_btc_usd_is_btcusd_where_the_exchange_lists_it_never_btcusdt(sim, app, market):
    def btcusd_priced():
        entry = by_pair(prices(app, "BTC/USD")).get("BTC/USD")
        return entry if entry and entry["symbol"] == "BTCUSD" else None
    entry = wait_until(btcusd_priced, 15, message="a BTCUSD price for BTC/USD")
    assert entry["status"] == "live" and entry["stale"] is False and "quote" not in entry
    # The exchange is asked for BTCUSD's streams; nobody subscribes to BTCUSDT for BTC/USD any more.
    wait_until(lambda: all("btcusd@aggTrade" in c["streams"] and "btcusdt@aggTrade" not in c["streams"]
                           for c in sim.connections()) and sim.connections(), 15,
               message="every upstream connection on btcusd, none on btcusdt")
    sim.market(paused=True)
    exchange = sim.prices()["BTCUSD"]
    wait_until(lambda: by_pair(prices(app, "BTC/USD"))["BTC/USD"]["price"] == exchange["price"], 10,
               message="the BTCUSD price itself")


def test_an_aliased_pair_names_the_symbol_and_quote_it_trades_as_in_every_entry(app, market):
    stream = SSEClient(app.url + f"{API}/stream?pairs=ETH/USD")
    try:
        stream.wait_for(lambda s: s.of("price"), 15, "a price event for ETH/USD")
        snapshot = stream.of("snapshot")[0].json()
        assert snapshot["pairs"]["ETH/USD"] == {"status": "live", "symbol": "ETHUSDT", "quote": "USDT"}
        event = stream.of("price")[0].json()
        assert (event["pair"], event["symbol"], event["quote"], event["status"]) == ("ETH/USD", "ETHUSDT", "USDT", "live")
        # /prices may land on the other worker, which gets the same tick from the feed's worker a
        # moment later (and, after the previous test paused the market, may not have had one yet).
        def eth_priced_on_both_workers():
            entries = [by_pair(prices(app, "ETH/USD")).get("ETH/USD") for _ in range(8)]
            return entries if all(entries) else None
        for entry in wait_until(eth_priced_on_both_workers, 10, message="an ETH/USD price from both workers"):
            assert (entry["symbol"], entry["quote"]) == ("ETHUSDT", "USDT")
        public = app.health()["pairs"]["ETH/USD"]
        assert (public["symbol"], public["quote"], public["status"]) == ("ETHUSDT", "USDT", "live")
    finally:
        stream.close()


def test_a_pair_the_exchange_does_not_list_is_unlisted_never_live_and_the_log_names_the_closest(app, market):
    stream = SSEClient(app.url + f"{API}/stream?pairs=SOL/EUR,BTC/USD")
    try:
        stream.wait_for(lambda s: len(s.of("price")) >= 5, 15, "prices for BTC/USD meanwhile")
        snapshot = stream.of("snapshot")[0].json()
        assert snapshot["pairs"]["SOL/EUR"] == {"status": "unlisted", "symbol": None}
        assert all(e.json()["pair"] != "SOL/EUR" for e in stream.of("price")), "a price for an unlisted pair"
        for _ in range(5):
            body = prices(app)
            assert "SOL/EUR" not in by_pair(body) and body["pairs"]["SOL/EUR"]["status"] == "unlisted"
            health = app.health()["pairs"]["SOL/EUR"]
            assert health["status"] == "unlisted" and health["stale"] is True
    finally:
        stream.close()
    assert "SOL/EUR is not listed on 127.0.0.1:" in app.output()
    assert "SOL/USDT is" in app.output()


def test_a_halted_market_is_halted_and_never_fresh_while_its_connection_is_live(sim, app, market):
    wait_until(lambda: all(by_pair(prices(app)).get("XRP/USDT", {}).get("status") == "live" for _ in range(8)), 15,
               message="XRP/USDT live before the halt, from both workers")
    stream = SSEClient(app.url + f"{API}/stream?pairs=XRP/USDT,BTC/USD")
    try:
        sim.list_symbol("XRPUSDT", "HALT")
        wait_until(lambda: every_worker(app, lambda h: h["pairs"]["XRP/USDT"]["status"] == "halted"), 20,
                   message="every worker to read the halt from the catalogue")
        halted_at = time.monotonic()
        while time.monotonic() - halted_at < 4:      # the connection stays live meanwhile: BTC/USD prices
            entry = by_pair(prices(app))["XRP/USDT"]
            assert entry["status"] == "halted" and entry["stale"] is True, entry
            assert app.health()["pairs"]["XRP/USDT"]["status"] == "halted"
            time.sleep(0.2)
        status = [e.json() for e in stream.of("status") if "XRP/USDT" in e.json().get("pairs", {})][-1]
        assert status["pairs"]["XRP/USDT"]["status"] == "halted" and "XRP/USDT" in status["stale"]
        assert all(not (e.json()["pair"] == "XRP/USDT" and e.json()["status"] == "live")
                   for e in stream.of("price") if e.received_at > halted_at)
    finally:
        stream.close()


def test_rest_prices_every_good_pair_with_the_exchange_time_while_one_is_unlisted_and_one_halted(sim, app, market):
    sim.list_symbol("XRPUSDT", "HALT")
    sim.market(paused=True)
    exchange = sim.prices()
    # The stream goes silent (no data, no control replies): the workers fall back to REST.
    sim.fault(fault="silence", duration=120)

    def rest_priced():
        entries = by_pair(prices(app))
        good = {pair: entries.get(pair) for pair in ("BTC/USD", "ETH/USD")}
        return good if all(e and e["source"] == "rest" for e in good.values()) else None
    good = wait_until(rest_priced, 45, message="REST prices for BTC/USD and ETH/USD")
    for pair, symbol in (("BTC/USD", "BTCUSD"), ("ETH/USD", "ETHUSDT")):
        assert good[pair]["symbol"] == symbol
        assert good[pair]["price"] == exchange[symbol]["price"]
        # The exchange's own time for the price (closeTime: its last trade), never our receive time.
        assert good[pair]["ts"] == exchange[symbol]["ts"]
    entries = by_pair(prices(app))
    assert "SOL/EUR" not in entries
    assert entries["XRP/USDT"]["source"] != "rest" and entries["XRP/USDT"]["status"] == "halted"
    rest = [s for s in (app.get_json(f"{API}/health")[1].get("rest") for _ in range(4)) if s]
    assert all(s["failures"] == 0 for s in rest), rest


def test_websocket_frames_carry_status_symbol_and_quote_too(app, market):
    # After the REST test's silence, each worker's stream has to come back first.
    wait_until(lambda: every_worker(app, lambda h: h["pairs"]["ETH/USD"]["status"] == "live"), 30,
               message="ETH/USD live on every worker")
    ws = websocket.create_connection(app.url.replace("http", "ws") + f"{API}/ws?pairs=ETH/USD,SOL/EUR", timeout=20)
    try:
        frames = [json.loads(ws.recv())]
        while not any(f["event"] == "price" for f in frames):
            frames.append(json.loads(ws.recv()))
    finally:
        ws.close()
    snapshot = frames[0]["data"]
    assert frames[0]["event"] == "snapshot"
    assert snapshot["pairs"] == {"ETH/USD": {"status": "live", "symbol": "ETHUSDT", "quote": "USDT"},
                                 "SOL/EUR": {"status": "unlisted", "symbol": None}}
    price = next(f["data"] for f in frames if f["event"] == "price")
    assert (price["pair"], price["symbol"], price["quote"], price["status"]) == ("ETH/USD", "ETHUSDT", "USDT", "live")


def test_the_weight_limit_is_the_exchanges_own_from_rate_limits(app):
    rest = wait_until(lambda: (lambda h: h.get("rest") if h.get("catalogue", {}).get("read") else None)(app.health()),
                      10, message="the detailed health of a worker that has read the catalogue")
    assert rest["exchange_weight_limit"] == 1200          # the simulator's, not the documented 6000


def test_a_delisting_while_running_is_picked_up_and_its_streams_dropped(sim, app, market):
    sim.list_symbol("XRPUSDT", None)
    try:
        wait_until(lambda: every_worker(app, lambda h: h["pairs"]["XRP/USDT"]["status"] == "unlisted"), 20,
                   message="every worker to see XRP/USDT delisted")
        wait_until(lambda: sim.connections() and all("xrpusdt@aggTrade" not in c["streams"] for c in sim.connections()),
                   15, message="the upstream connections without XRPUSDT")
        assert prices(app)["pairs"]["XRP/USDT"]["status"] == "unlisted"
    finally:
        sim.list_symbol("XRPUSDT", "TRADING")
    wait_until(lambda: every_worker(app, lambda h: h["pairs"]["XRP/USDT"]["status"] == "live"), 30,
               message="XRP/USDT listed and live again")
