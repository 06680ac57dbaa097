"""Headless Chromium runs static/pricefeed.js as an ES module (and as a classic script) against real gunicorn."""
from __future__ import annotations

import json
import signal

import pytest

from tests.browser.conftest import BROWSER_APP, PageErrors, deployment, streams
from tests.support.gunicorn import GunicornProcess
from tests.support.server_features import has_endpoint, has_interval_parameter
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser
needs_ws = pytest.mark.skipif(not has_endpoint("ws"), reason="the server has no {prefix}/ws")
needs_interval = pytest.mark.skipif(not has_interval_parameter(),
                                    reason="the server has no per-client interval")


@pytest.fixture(scope="module")
def served():
    with deployment(env={"PRICEFEED_STALE_AFTER": "1"}) as (sim, app):
        yield sim, app


@pytest.fixture
def page(chromium):
    context = chromium.new_context()
    page = context.new_page()
    page.errors = PageErrors(page)
    yield page
    context.close()


def record(page) -> dict:
    return page.evaluate("window.record")


def open_module_page(page, app, query: str) -> None:
    page.goto(f"{app.url}/test-pages/module.html?{query}")
    wait_until(lambda: page.evaluate("window.feed && window.feed.state") == "open", 15, message="the feed open")


def no_streams_but(app, count: int) -> None:
    wait_until(lambda: streams(app)["clients"] == count, 10, message=f"{count} stream(s) on the server")


def test_the_module_in_a_plain_page_shows_the_exchanges_price_strings(served, page):
    sim, app = served
    open_module_page(page, app, "pairs=BTC/USD,ETH/USD")
    wait_until(lambda: len(record(page)["prices"]) == 2, 10, message="both pairs on the page")
    sim.market(paused=True)
    try:
        def page_shows_server_prices():
            shown = {pair: page.get_attribute(f'li[data-pair="{pair}"] .price', "data-raw") for pair in ("BTC/USD", "ETH/USD")}
            return shown == app.prices("BTC/USD,ETH/USD") and shown
        shown = wait_until(page_shows_server_prices, 10, message="the page to show the server's final strings")
        final = sim.prices()["BTCUSDT"]["price"]
        assert shown["BTC/USD"].rstrip("0").rstrip(".") == final.rstrip("0").rstrip(".")
        assert page.evaluate("window.feed.transport") == "sse"
    finally:
        sim.market(paused=False)
    assert not page.errors.unexpected(), page.errors.unexpected()


def test_subscribe_and_unsubscribe_over_sse_reopen_once_resuming_from_the_last_event_id(served, page):
    sim, app = served
    open_module_page(page, app, "pairs=BTC/USD")
    wait_until(lambda: "BTC/USD" in record(page)["prices"], 10, message="a BTC/USD price")
    before = streams(app)["clients_total"]
    last_id = page.evaluate("window.feed.lastEventId")
    assert last_id

    page.evaluate('window.feed.subscribe(["ETH/USD"])')
    wait_until(lambda: "ETH/USD" in record(page)["prices"], 10, message="an ETH/USD price after subscribe")
    snapshots = record(page)["snapshots"]
    assert len(snapshots) == 2 and sorted(snapshots[1]["pairs"]) == ["BTC/USD", "ETH/USD"]
    assert snapshots[1]["resume"] is not None, "the reopened stream must resume from Last-Event-ID"
    assert streams(app)["clients_total"] == before + 1
    no_streams_but(app, 1)

    page.evaluate('window.feed.unsubscribe(["BTC/USD"])')
    wait_until(lambda: len(record(page)["snapshots"]) == 3, 10, message="a stream of ETH/USD alone")
    assert record(page)["snapshots"][2]["pairs"] == ["ETH/USD"]
    assert page.evaluate('window.feed.latest("BTC/USD")') is None
    no_streams_but(app, 1)
    assert not page.errors.unexpected(), page.errors.unexpected()


def test_unsubscribing_every_pair_closes_the_stream_until_one_is_subscribed_again(served, page):
    sim, app = served
    open_module_page(page, app, "pairs=BTC/USD")
    page.evaluate('window.feed.unsubscribe(["BTC/USD"])')
    wait_until(lambda: page.evaluate("window.feed.state") == "closed", 5, message="the feed idle")
    assert record(page)["states"][-1]["info"]["reason"] == "no_pairs"
    no_streams_but(app, 0)
    page.evaluate('window.feed.subscribe(["SOL/USD"])')
    wait_until(lambda: "SOL/USD" in record(page)["prices"], 10, message="a SOL/USD price")
    assert record(page)["snapshots"][-1]["pairs"] == ["SOL/USD"]
    assert not page.errors.unexpected(), page.errors.unexpected()


def test_stale_callback_fires_when_a_price_ages_past_stale_after_and_clears_on_a_fresh_one(served, page):
    sim, app = served
    open_module_page(page, app, "pairs=BTC/USD&staleCheckMs=200")
    wait_until(lambda: "BTC/USD" in record(page)["prices"], 10, message="a BTC/USD price")
    assert page.evaluate("window.feed.staleAfterMs") == 1000, "stale_after_ms comes from the server"
    sim.market(paused=True)
    try:
        wait_until(lambda: {"pair": "BTC/USD", "stale": True} in
                   [{"pair": s["pair"], "stale": s["stale"]} for s in record(page)["stale"]], 10,
                   message="a stale callback for BTC/USD")
        assert page.get_attribute('li[data-pair="BTC/USD"]', "data-stale") == "true"
    finally:
        sim.market(paused=False)
    wait_until(lambda: page.get_attribute('li[data-pair="BTC/USD"]', "data-stale") == "false", 10,
               message="BTC/USD fresh again")
    assert not page.errors.unexpected(), page.errors.unexpected()


def set_visibility(page, state: str) -> None:
    page.evaluate("""(state) => {
        Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
        Object.defineProperty(document, "hidden", {configurable: true, get: () => state === "hidden"});
        document.dispatchEvent(new Event("visibilitychange"));
    }""", state)


@pytest.mark.parametrize("transport", ["sse", pytest.param("ws", marks=needs_ws)])
def test_a_hidden_tab_closes_its_stream_and_resumes_with_last_event_id_when_seen_again(served, page, transport):
    sim, app = served
    open_module_page(page, app, f"pairs=BTC/USD&hiddenCloseMs=300&transport={transport}")
    assert page.evaluate("window.feed.transport") == transport
    no_streams_but(app, 1)
    set_visibility(page, "hidden")
    wait_until(lambda: page.evaluate("window.feed.state") == "paused", 5, message="the feed paused")
    no_streams_but(app, 0)
    last_id = page.evaluate("window.feed.lastEventId")

    set_visibility(page, "visible")
    wait_until(lambda: page.evaluate("window.feed.state") == "open", 10, message="the feed open again")
    assert page.evaluate("window.feed.transport") == transport
    resumed = record(page)["snapshots"][-1]["resume"]
    assert resumed is not None and resumed["last_event_id"] == last_id
    no_streams_but(app, 1)
    assert not page.errors.unexpected(), page.errors.unexpected()


def test_the_module_tag_sets_window_pricefeed_for_the_deferred_scripts_after_it(served, page):
    sim, app = served
    page.goto(f"{app.url}/test-pages/legacy.html")
    raw = wait_until(lambda: page.get_attribute("#price", "data-raw"), 15, message="an ETH/USD price")
    assert raw.replace(".", "").isdigit()
    assert not page.errors.unexpected(), page.errors.unexpected()


def test_the_classic_shim_sets_window_pricefeed_for_pages_without_modules(served, page):
    sim, app = served
    page.goto(f"{app.url}/test-pages/classic.html")
    raw = wait_until(lambda: page.get_attribute("#price", "data-raw"), 15, message="a BTC/USD price")
    assert raw.replace(".", "").isdigit()
    assert page.evaluate("typeof window.PriceFeed.Decimal.format") == "function"
    assert not page.errors.unexpected(), page.errors.unexpected()


def test_auto_falls_back_to_sse_when_the_websocket_handshake_fails(served, chromium):
    sim, app = served
    context = chromium.new_context()
    page = context.new_page()
    errors = PageErrors(page, allow=("WebSocket connection to",))
    try:
        open_module_page(page, app, "pairs=BTC/USD&transport=auto&wsUrl=/api/market-data/no-such-socket")
        assert page.evaluate("window.feed.transport") == "sse"
        wait_until(lambda: "BTC/USD" in record(page)["prices"], 10, message="a BTC/USD price over SSE")
        assert not errors.unexpected(), errors.unexpected()
    finally:
        context.close()


@needs_ws
def test_websocket_subscribe_and_unsubscribe_change_pairs_without_reconnecting(served, page):
    sim, app = served
    open_module_page(page, app, "pairs=BTC/USD&transport=ws")
    assert page.evaluate("window.feed.transport") == "ws"
    wait_until(lambda: "BTC/USD" in record(page)["prices"], 10, message="a BTC/USD price over WebSocket")
    total = streams(app)["clients_total"]
    page.evaluate('window.feed.subscribe(["ETH/USD"])')
    wait_until(lambda: "ETH/USD" in record(page)["prices"], 10, message="an ETH/USD price after subscribe")
    page.evaluate('window.feed.unsubscribe(["BTC/USD"])')
    wait_until(lambda: page.evaluate('window.feed.latest("BTC/USD")') is None, 5, message="BTC/USD dropped")
    count = record(page)["priceEvents"]
    wait_until(lambda: record(page)["priceEvents"] > count + 3, 10, message="more prices after unsubscribe")
    assert set(page.evaluate("window.feed.latestAll().map(p => p.pair)")) == {"ETH/USD"}
    assert len(record(page)["snapshots"]) == 1, "pair changes must not reopen the socket"
    assert streams(app)["clients_total"] == total
    assert not page.errors.unexpected(), page.errors.unexpected()


@needs_ws
def test_auto_uses_the_websocket_when_the_server_has_one(served, page):
    sim, app = served
    open_module_page(page, app, "pairs=BTC/USD&transport=auto")
    assert page.evaluate("window.feed.transport") == "ws"
    assert not page.errors.unexpected(), page.errors.unexpected()


@needs_interval
def test_the_interval_option_reaches_the_server_and_the_snapshot_says_the_pace(served, page):
    sim, app = served
    open_module_page(page, app, "pairs=BTC/USD&interval=1000")
    assert record(page)["snapshots"][0]["interval_ms"] == 1000
    assert page.evaluate("window.feed.intervalMs") == 1000


def test_a_refused_stream_waits_out_retry_after_with_jitter_and_polls_prices_meanwhile(chromium):
    with deployment(env={"PRICEFEED_MAX_CLIENTS": "1"}) as (sim, app):
        occupant = SSEClient(app.url + "/api/market-data/stream?pairs=BTC/USD")
        try:
            wait_until(lambda: streams(app)["clients"] == 1, 10, message="the one slot taken")
            context = chromium.new_context()
            page = context.new_page()
            errors = PageErrors(page, allow=("status of 503",))
            page.goto(f"{app.url}/test-pages/module.html?pairs=BTC/USD&pollMs=300")
            refused = wait_until(lambda: [s for s in record(page)["states"] if s["state"] == "reconnecting"], 10,
                                 message="the page told to come back later")[0]["info"]
            assert refused["status"] == 503 and refused["error"] == "at_capacity"
            assert refused["retryAfterMs"] >= 5000 and refused["retryInMs"] >= refused["retryAfterMs"]
            # Meanwhile the page shows prices polled from /prices.
            wait_until(lambda: record(page)["polled"] >= 2, 10, message="prices polled while refused")
            assert page.get_attribute('li[data-pair="BTC/USD"] .price', "data-raw")
            attempts_before = streams(app)["clients_refused"]
            occupant.close()
            wait_until(lambda: page.evaluate("window.feed.state") == "open", 60, message="the page streaming again")
            first_refusal = record(page)["states"][1]["at"]
            opened = [s for s in record(page)["states"] if s["state"] == "open"][0]["at"]
            assert opened - first_refusal >= refused["retryAfterMs"] - 50
            assert streams(app)["clients_refused"] - attempts_before <= 1
            assert not errors.unexpected(), errors.unexpected()
            context.close()
        finally:
            occupant.close()


def test_after_a_server_restart_the_page_reconnects_by_itself_and_resumes(chromium):
    with deployment() as (sim, app):
        context = chromium.new_context()
        page = context.new_page()
        errors = PageErrors(page, allow=("ERR_CONNECTION_REFUSED", "ERR_EMPTY_RESPONSE", "ERR_INCOMPLETE_CHUNKED_ENCODING",
                                               "status of 503"))
        try:
            open_module_page(page, app, "pairs=BTC/USD&backoffMs=500&pollMs=300")
            app.stop()   # SIGTERM: the worker hangs up its streams and exits
            wait_until(lambda: page.evaluate("window.feed.state") == "reconnecting", 10, message="the page reconnecting")
            last_id = page.evaluate("window.feed.lastEventId")
            with GunicornProcess(workers=1, port=app.port, app=BROWSER_APP,
                                 env={"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": "BTC/USD,ETH/USD,SOL/USD"}) as again:
                wait_until(lambda: page.evaluate("window.feed.state") == "open", 30, message="the page streaming again")
                resumed = record(page)["snapshots"][-1]["resume"]
                assert resumed is not None and resumed["last_event_id"] == last_id
                count = record(page)["priceEvents"]
                wait_until(lambda: record(page)["priceEvents"] > count, 10, message="prices after the restart")
                assert streams(again)["clients"] == 1
            assert not errors.unexpected(), errors.unexpected()
        finally:
            context.close()


def test_a_graceful_restart_sends_each_page_back_after_its_own_retry_to_a_new_worker(chromium):
    # The preamble's retry: is 100 ms; the restart's farewell is 1-3 s, a different one per stream.
    env = {"PRICEFEED_RETRY_MS": "100", "PRICEFEED_RETRY_JITTER_MS": "0", "PRICEFEED_RESTART_RETRY_MS": "1000",
           "PRICEFEED_RESTART_RETRY_JITTER_MS": "2000", "PRICEFEED_RESTART_SPREAD": "0.5",
           "PRICEFEED_RESTART_CLOSE_DELAY": "0.5"}
    with deployment(env=env) as (sim, app):
        contexts = [chromium.new_context() for _ in range(3)]
        pages = [context.new_page() for context in contexts]
        errors = [PageErrors(page) for page in pages]
        try:
            for page in pages:
                open_module_page(page, app, "pairs=BTC/USD")
            no_streams_but(app, 3)
            old_worker = app.health()["worker"]["id"]
            app.proc.send_signal(signal.SIGHUP)
            for page in pages:
                wait_until(lambda: len([s for s in record(page)["states"] if s["state"] == "open"]) >= 2,
                           30, message="the page streaming again after the restart")
            for page in pages:
                states = record(page)["states"]
                ended = [s for s in states if s["state"] == "reconnecting"]
                assert len(ended) == 1, json.dumps(states)          # back at the first try: no 503, no error
                told = ended[0]["info"]
                assert told["error"] == "stream_ended" and told["status"] is None
                # It waited the farewell's retry: exactly (not the preamble's 100 ms, not a draw below it).
                assert 1000 <= told["retryInMs"] <= 3000, told
                reopened = [s for s in states if s["state"] == "open"][-1]["at"]
                assert reopened - ended[0]["at"] >= told["retryInMs"] - 50
                assert record(page)["snapshots"][-1]["resume"] is not None      # resumed from its last id
            assert len({record(page)["states"][-2]["info"]["retryInMs"] for page in pages}) > 1   # jittered per stream
            health = wait_until(lambda: (h := app.health())["worker"]["id"] != old_worker and h, 10,
                                message="a new worker answering")
            wait_until(lambda: streams(app)["clients"] == 3, 10, message="the three pages on the new worker")
            assert health["worker"]["id"] != old_worker
            for page in pages:
                count = record(page)["priceEvents"]
                wait_until(lambda: record(page)["priceEvents"] > count, 10,
                           message="prices after the restart")
            for page_errors in errors:
                assert not page_errors.unexpected(), page_errors.unexpected()
        finally:
            for context in contexts:
                context.close()
