"""Live prices end to end on one host without Redis: simulator → gunicorn (2 gevent workers) → SSE.

Asserts what a browser would observe: the bytes of the stream and the prices it ends with.
"""
from __future__ import annotations

import json
import re
import threading

import pytest
import websocket

from tests.support.deployment import all_live
from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

PAIRS = "BTC/USD,ETH/USD,SOL/USD"
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"
STREAM = "/api/market-data/stream"
EVENT_BLOCK = re.compile(rb"^id: [0-9]+-[0-9]+\nevent: price\ndata: \{[^\n]*\}$")


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=30) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def app(sim):
    env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": PAIRS,
           "PRICEFEED_HEARTBEAT_INTERVAL": "0.5", "PRICEFEED_MAX_CLIENTS": "200"}
    with GunicornProcess(workers=2, env=env) as server:
        # Every worker, not whichever /health lands on: without Redis each runs its own feed, and
        # a stream opened on one still connecting would start `degraded` (seen once in CI).
        all_live([server])
        yield server


@pytest.fixture
def running_market(sim):
    sim.market(paused=False)
    yield
    sim.market(paused=False)


def stream(app, query=f"?pairs={PAIRS}", headers=None) -> SSEClient:
    client = SSEClient(app.url + STREAM + query, headers=headers)
    assert client.status == 200, client.body
    return client


def test_a_trade_sent_by_the_exchange_reaches_the_sse_client_byte_exact(sim, app, running_market):
    sent: list[dict] = []
    observer = websocket.create_connection(f"{sim.ws_url}/ws/btcusdt@aggTrade", timeout=10)

    def observe():
        try:
            for _ in range(60):
                sent.append(json.loads(observer.recv()))
        except (websocket.WebSocketException, OSError, ValueError):
            pass  # closed at the end of the test
    reader = threading.Thread(target=observe, daemon=True)
    reader.start()
    client = stream(app, "?pairs=BTC/USD")
    try:
        def delivered_trade():
            by_exchange_time = {(t["E"], t["p"]): t for t in list(sent)}
            for event in client.of("price"):
                body = event.json()
                if (body["ts"], body["price"]) in by_exchange_time:
                    return event, by_exchange_time[(body["ts"], body["price"])]
            return None
        event, trade = wait_until(delivered_trade, 15, message="a trade the observer also saw")
        assert EVENT_BLOCK.match(event.raw), event.raw
        # The price travels as the exchange's exact bytes, not re-formatted through a number.
        assert f'"price":"{trade["p"]}"'.encode() in event.raw
        body = event.json()
        assert (body["pair"], body["symbol"], body["source"], body["stale"]) == (
            "BTC/USD", "BTCUSDT", "simulator", False)
    finally:
        client.close()
        observer.close()


def test_stream_starts_with_jittered_retry_then_snapshot_then_ordered_price_events(app, running_market):
    clients = [stream(app) for _ in range(6)]
    try:
        for client in clients:
            client.wait_for(lambda c: len(c.of("price")) >= 5, 15, "five prices")
        first = clients[0].events
        assert first[0].retry is not None and 2000 <= first[0].retry <= 5000
        assert first[1].name == "snapshot" and re.match(r"^[0-9]+-[0-9]+$", first[1].required_id())
        snapshot = first[1].json()
        assert snapshot["mode"] == "live" and snapshot["simulated"] is True
        assert {p["pair"] for p in snapshot["prices"]} <= set(PAIRS.split(","))
        seqs = [int(e.required_id().split("-")[1]) for e in clients[0].of("price")]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # Jitter: a restart must not bring every browser back in the same second.
        assert len({c.events[0].retry for c in clients}) > 1
        assert clients[0].headers["content-type"].startswith("text/event-stream")
        assert clients[0].headers["cache-control"] == "no-cache"
        assert clients[0].headers["x-accel-buffering"] == "no"
    finally:
        for client in clients:
            client.close()


def test_every_client_ends_with_the_exchanges_final_prices(sim, app, running_market):
    clients = [stream(app) for _ in range(8)]
    try:
        for client in clients:
            client.wait_for(lambda c: len(c.of("price")) >= 3, 15, "prices")
        sim.market(paused=True)
        final = {pair: sim.prices()[symbol]["price"] for pair, symbol in
                 zip(PAIRS.split(","), SYMBOLS.split(","), strict=True)}
        for client in clients:
            client.wait_for(lambda c: c.latest_prices() == final, 10, "the final prices")
        wait_until(lambda: app.prices(PAIRS) == final, 10, message="/prices to show the final prices")
    finally:
        for client in clients:
            client.close()


def test_idle_stream_gets_a_heartbeat_comment(sim, app, running_market):
    sim.market(paused=True)
    client = stream(app, "?pairs=BTC/USD")
    try:
        client.wait_for(lambda c: any(e.raw == b": ping" for e in c.comments()), 5, "a ping comment")
    finally:
        client.close()


def test_last_event_id_resume_reports_whether_there_was_a_gap(app, running_market):
    first = stream(app, "?pairs=BTC/USD")
    first.wait_for(lambda c: len(c.of("price")) >= 3, 15, "prices")
    last_id = first.of("price")[-1].id
    worker = first.of("snapshot")[0].json()["worker"]
    first.close()
    for headers, query in [({"Last-Event-ID": last_id}, "?pairs=BTC/USD"),
                           ({}, f"?pairs=BTC/USD&lastEventId={last_id}")]:
        again = stream(app, query, headers)
        try:
            again.wait_for(lambda c: c.of("snapshot"), 5, "snapshot")
            snapshot = again.of("snapshot")[0].json()
            assert snapshot["resume"]["last_event_id"] == last_id
            if snapshot["worker"] == worker:
                # Same publisher, recent id: it knows exactly what was missed.
                assert snapshot["resume"]["gap"] is False
            else:
                # Another worker is another publisher (no Redis): it cannot vouch.
                assert snapshot["resume"]["gap"] is True
        finally:
            again.close()


@pytest.mark.parametrize("path, headers, error", [
    (STREAM + "?pairs=DOGE/USD", {}, "unknown_pair"),
    (STREAM + "?pairs=", {}, "malformed_pairs"),
    (STREAM + "?pairs=BTC/USD,,ETH/USD", {}, "malformed_pairs"),
    (STREAM + "?pairs=BTCUSD", {}, "malformed_pair"),
    (STREAM + "?pairs=%0d%0aSet-Cookie:x", {}, "malformed_pair"),
    (STREAM + "?pairs=" + ",".join(["BTC/USD"] * 51), {}, "too_many_pairs"),
    (STREAM + "?pairs=BTC/USD&x=" + "a" * 10000, {}, "query_too_long"),
    (STREAM + "?pairs=BTC/USD", {"Last-Event-ID": "garbage\u00e9"}, "malformed_last_event_id"),
    (STREAM + "?pairs=BTC/USD", {"Last-Event-ID": "1-2-3"}, "malformed_last_event_id"),
    (STREAM + "?pairs=BTC/USD&lastEventId=99999999999999999999999-1", {}, "malformed_last_event_id"),
    ("/api/market-data/prices?pairs=xyz", {}, "malformed_pair"),
    ("/api/market-data/nope", {}, "not_found"),
])
def test_bad_requests_get_a_4xx_json_reason_never_a_5xx(app, path, headers, error):
    status, body = app.get(path, headers={k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()})
    assert 400 <= status < 500
    document = json.loads(body)
    assert document["error"] == error and document["detail"]


def test_head_of_the_stream_answers_headers_and_holds_no_stream(app):
    no_streams = lambda: all(app.health()["clients"]["clients"] == 0 for _ in range(6))  # noqa: E731
    wait_until(no_streams, 10, message="no open streams")
    for _ in range(20):
        status, body = app.get(STREAM, method="HEAD")
        assert status == 200 and body == b""
    # A HEAD stream would never be closed: its slot would stay taken.
    assert no_streams()


def test_the_bare_prefix_answers_json(app):
    for path in ("/api/market-data/", "/api/market-data/nope/deeper"):
        status, body = app.get(path)
        assert status == 404 and json.loads(body)["error"] == "not_found"


def test_wrong_method_gets_a_json_405(app):
    status, body = app.get(STREAM, method="POST")
    assert status == 405 and json.loads(body)["error"] == "method_not_allowed"


def test_health_reports_the_live_upstream_and_no_secrets(app):
    status, health = app.get_json("/api/market-data/health")
    assert status == 200
    assert health["status"] == "ok" and health["mode"] == "live" and health["simulated"] is True
    upstream = health["upstream"]
    assert upstream["connected"] and upstream["messages"] > 0 and upstream["last_message_age_s"] < 5
    assert set(health["pairs"]) == set(PAIRS.split(","))
    assert "password" not in json.dumps(health).lower()


def test_dashboard_and_its_client_script_are_served(app):
    status, page = app.get("/")
    assert status == 200 and b'data-pair="BTC/USD"' in page
    status, script = app.get("/pricefeed-static/pricefeed.js")
    assert status == 200 and b"EventSource" in script


def test_at_capacity_the_stream_answers_503_with_retry_after(sim):
    env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": PAIRS, "PRICEFEED_MAX_CLIENTS": "2"}
    with GunicornProcess(workers=1, env=env) as server:
        held = [stream(server) for _ in range(2)]
        try:
            refused = SSEClient(server.url + STREAM)
            assert refused.status == 503
            assert int(refused.headers["retry-after"]) > 0
            assert json.loads(refused.body)["error"] == "at_capacity"
        finally:
            for client in held:
                client.close()
