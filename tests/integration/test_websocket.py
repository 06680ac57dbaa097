"""The WebSocket transport at {prefix}/ws against real gunicorn (2 gevent workers, one Redis
deployment) and the simulator: what a client sees — messages, replies, close codes, HTTP answers.
"""
from __future__ import annotations

import json

import pytest
import websocket

from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until
from tests.support.ws_client import RawWebSocket, WSClient

WS = "/api/market-data/ws"
STREAM = "/api/market-data/stream"


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=30) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def app(sim, redis_server):
    env = instance_env(sim, redis_server.url, new_prefix())
    with GunicornProcess(workers=2, env=env) as server:
        all_live([server])
        yield server


@pytest.fixture(scope="module")
def strict(sim, redis_server):
    """Small limits, to reach each of them."""
    env = instance_env(sim, redis_server.url, new_prefix(), PRICEFEED_WS_MAX_MESSAGE_BYTES="256",
                       PRICEFEED_WS_OPS_PER_SECOND="2", PRICEFEED_WS_OPS_BURST="5",
                       PRICEFEED_WS_IDLE_TIMEOUT="3", PRICEFEED_MAX_PAIRS_PER_REQUEST="2")
    with GunicornProcess(workers=2, env=env) as server:
        all_live([server])
        yield server


@pytest.fixture(autouse=True)
def running_market(sim):
    sim.market(paused=False)
    yield
    sim.market(paused=False)


def ws_url(server: GunicornProcess, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + WS + query


def prices_of(client: WSClient, pair: str, after: int = 0) -> list[str]:
    return [m.data["price"] for m in client.messages[after:] if m.event == "price" and m.data["pair"] == pair]


def test_the_first_message_is_the_snapshot_with_the_same_data_as_the_sse_snapshot(app):
    client = WSClient(ws_url(app, "?pairs=BTC/USD,ETH/USD"))
    try:
        client.wait_for(lambda c: c.of("snapshot") and c.of("price"), message="snapshot and a price")
        first = client.messages[0]
        assert first.event == "snapshot" and first.body["id"] is not None
        assert set(first.data) >= {"prices", "mode", "simulated", "stale", "stale_after_ms", "server_time",
                                   "worker", "resume", "interval_ms"}
        assert {p["pair"] for p in first.data["prices"]} == {"BTC/USD", "ETH/USD"}
        price = client.of("price")[0]
        assert set(price.body) == {"event", "id", "data"}
        assert price.data["pair"] in ("BTC/USD", "ETH/USD") and isinstance(price.data["price"], str)
    finally:
        client.close()


def test_subscribe_adds_pairs_with_their_latest_price_and_unsubscribe_removes_them(app):
    client = WSClient(ws_url(app, "?pairs=BTC/USD"))
    try:
        client.wait_for(lambda c: c.of("price"), message="a BTC price")
        assert not prices_of(client, "ETH/USD")
        client.send({"op": "subscribe", "pairs": ["eth/usd", "BTC/USD"]})
        client.wait_for(lambda c: c.of("subscribed"), message="subscribed")
        at = client.messages.index(client.of("subscribed")[0])
        # Both frames come in one write, but the reader thread records them one at a time.
        client.wait_for(lambda c: len(c.messages) > at + 1, message="the frame after subscribed")
        assert client.messages[at].data == {"pairs": ["BTC/USD", "ETH/USD"]}
        assert client.messages[at + 1].event == "price" and client.messages[at + 1].data["pair"] == "ETH/USD"
        client.wait_for(lambda c: len(prices_of(c, "ETH/USD", at)) >= 5, message="ETH prices flowing")

        client.send({"op": "unsubscribe", "pairs": ["BTC/USD"]})
        client.wait_for(lambda c: len(c.of("subscribed")) == 2, message="the second subscribed")
        at = client.messages.index(client.of("subscribed")[1])
        assert client.messages[at].data == {"pairs": ["ETH/USD"]}
        client.wait_for(lambda c: len(prices_of(c, "ETH/USD", at)) >= 10, message="more ETH prices")
        assert prices_of(client, "BTC/USD", at) == []
    finally:
        client.close()


def test_ping_gets_a_pong(app):
    client = WSClient(ws_url(app, "?pairs=BTC/USD"))
    try:
        client.send({"op": "ping"})
        pong = client.wait_for(lambda c: c.of("pong"), message="pong")[0]
        assert pong.body["id"] is None and isinstance(pong.data["server_time"], int)
    finally:
        client.close()


def test_resume_with_last_event_id_reports_no_gap_and_a_bad_id_is_refused(app):
    first = WSClient(ws_url(app, "?pairs=BTC/USD,ETH/USD"))
    try:
        last = first.wait_for(lambda c: c.of("price"), message="a price")[-1].body["id"]
    finally:
        first.close()
    again = WSClient(ws_url(app, f"?pairs=BTC/USD,ETH/USD&lastEventId={last}"))
    try:
        snapshot = again.wait_for(lambda c: c.of("snapshot"), message="snapshot")[0]
        assert snapshot.data["resume"]["last_event_id"] == last
        assert snapshot.data["resume"]["gap"] is False
    finally:
        again.close()
    refused = RawWebSocket(app.port, WS + "?lastEventId=yesterday")
    try:
        assert refused.status == 400
        assert json.loads(refused.body())["error"] == "malformed_last_event_id"
    finally:
        refused.close()


@pytest.mark.parametrize("message, error", [
    ("not json", "malformed_operation"),
    ("[1, 2]", "malformed_operation"),
    ('{"op": "dance"}', "unknown_operation"),
    ('{"op": "subscribe"}', "malformed_pairs"),
    ('{"op": "subscribe", "pairs": []}', "malformed_pairs"),
    ('{"op": "subscribe", "pairs": [42]}', "malformed_pairs"),
    ('{"op": "subscribe", "pairs": ["BTC-USD"]}', "malformed_pair"),
    ('{"op": "subscribe", "pairs": ["DOGE/USD"]}', "unknown_pair"),
])
def test_a_bad_operation_gets_an_error_message_and_the_socket_stays_open(app, message, error):
    client = WSClient(ws_url(app, "?pairs=BTC/USD"))
    try:
        client.send(message)
        answer = client.wait_for(lambda c: c.of("error"), message="an error message")[0]
        assert answer.data["error"] == error and answer.data["detail"]
        client.send({"op": "ping"})
        client.wait_for(lambda c: c.of("pong"), message="a pong after the error")
        assert not client.closed
    finally:
        client.close()


def test_a_binary_message_gets_an_error_and_the_socket_stays_open(app):
    client = WSClient(ws_url(app, "?pairs=BTC/USD"))
    try:
        client.ws.send_binary(b"\x00\x01")
        answer = client.wait_for(lambda c: c.of("error"), message="an error message")[0]
        assert answer.data["error"] == "unsupported_message"
        client.send({"op": "ping"})
        client.wait_for(lambda c: c.of("pong"), message="a pong after the error")
    finally:
        client.close()


@pytest.mark.parametrize("query, error", [
    ("?pairs=", "malformed_pairs"), ("?pairs=NOPE/USD", "unknown_pair"), ("?interval=5", "malformed_interval"),
])
def test_a_bad_query_is_refused_before_the_handshake_with_the_usual_json_400(app, query, error):
    refused = RawWebSocket(app.port, WS + query)
    try:
        assert refused.status == 400
        assert json.loads(refused.body())["error"] == error
    finally:
        refused.close()


def test_a_plain_http_request_to_the_socket_endpoint_gets_426(app):
    status, body = app.get(WS)
    assert status == 426 and json.loads(body)["error"] == "upgrade_required"


def test_a_page_from_another_origin_is_refused_and_the_same_origin_is_served(app):
    refused = RawWebSocket(app.port, WS + "?pairs=BTC/USD", {"Origin": "http://evil.example"})
    try:
        assert refused.status == 403
        assert json.loads(refused.body())["error"] == "origin_not_allowed"
    finally:
        refused.close()
    same = WSClient(ws_url(app, "?pairs=BTC/USD"), origin=f"http://127.0.0.1:{app.port}")
    try:
        same.wait_for(lambda c: c.of("snapshot"), message="snapshot for the same origin")
    finally:
        same.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused_by_client:
        WSClient(ws_url(app), origin="https://127.0.0.1.evil.example")
    assert refused_by_client.value.status_code == 403


def test_a_message_over_the_size_limit_closes_the_socket_with_1009(strict):
    client = WSClient(ws_url(strict, "?pairs=BTC/USD"))
    try:
        client.send(json.dumps({"op": "ping", "padding": "x" * 300}))
        client.wait_for(lambda c: c.closed, message="the server to close")
        assert client.close_code == 1009
    finally:
        client.close()


def test_operations_past_the_rate_limit_close_the_socket_with_1008(strict):
    client = WSClient(ws_url(strict, "?pairs=BTC/USD"))
    try:
        for _ in range(20):          # a burst of 5, then 2 per second
            client.send({"op": "ping"})
        client.wait_for(lambda c: c.closed, message="the server to close")
        assert client.close_code == 1008
        assert 5 <= len(client.of("pong")) < 20
    finally:
        client.close()


def test_subscribing_past_the_pairs_cap_is_refused_and_the_subscription_kept(strict):
    client = WSClient(ws_url(strict, "?pairs=BTC/USD"))
    try:
        client.send({"op": "subscribe", "pairs": ["ETH/USD", "SOL/USD"]})
        answer = client.wait_for(lambda c: c.of("error"), message="an error")[0]
        assert answer.data["error"] == "too_many_pairs"
        client.send({"op": "subscribe", "pairs": ["ETH/USD"]})
        subscribed = client.wait_for(lambda c: c.of("subscribed"), message="subscribed")[0]
        assert subscribed.data == {"pairs": ["BTC/USD", "ETH/USD"]}
    finally:
        client.close()


def test_a_client_that_never_answers_pings_is_closed_after_the_idle_timeout(strict):
    silent = RawWebSocket(strict.port, WS + "?pairs=BTC/USD")
    try:
        assert silent.status == 101
        code, frames = silent.read_until_close()      # pings (opcode 9) arrive meanwhile, unanswered
        assert code == 1001
        assert frames and frames[0][0] == 0x1
    finally:
        silent.close()


def test_an_unmasked_client_frame_closes_the_socket_with_1002(strict):
    rude = RawWebSocket(strict.port, WS + "?pairs=BTC/USD")
    try:
        rude.send_frame(0x1, b'{"op":"ping"}', mask=False)
        code, _ = rude.read_until_close()
        assert code == 1002
    finally:
        rude.close()


def test_an_sse_client_and_a_websocket_client_on_one_worker_receive_the_same_price_strings(app):
    sse = ws = None
    for _ in range(20):     # requests land on either worker: pair one SSE and one WebSocket client up
        sse = SSEClient(f"{app.url}{STREAM}?pairs={PAIRS}&interval=0")
        ws = WSClient(ws_url(app, f"?pairs={PAIRS}&interval=0"))
        sse.wait_for(lambda c: c.of("snapshot"), message="SSE snapshot")
        ws.wait_for(lambda c: c.of("snapshot"), message="WS snapshot")
        if sse.of("snapshot")[0].json()["worker"] == ws.of("snapshot")[0].data["worker"]:
            break
        sse.close()
        ws.close()
    else:
        pytest.fail("never got both clients on one worker")
    try:
        def both_past(count):
            return lambda: len(sse.of("price")) >= count and len(ws.of("price")) >= count
        wait_until(both_past(40), 20, message="40 prices on each")
        sse_events = [(e.id, e.json()["pair"], e.json()["price"]) for e in sse.of("price")]
        ws_events = [(m.body["id"], m.data["pair"], m.data["price"]) for m in ws.of("price")]
        common = set(e[0] for e in sse_events) & set(e[0] for e in ws_events)
        assert len(common) >= 30
        assert [e for e in sse_events if e[0] in common] == [e for e in ws_events if e[0] in common]
        # Exactly the same data, not just the same price: the WebSocket data is the SSE data.
        sse_data = {e.id: e.data for e in sse.of("price")}
        assert all(json.dumps(m.data, separators=(",", ":"), ensure_ascii=False) == sse_data[m.body["id"]]
                   for m in ws.of("price") if m.body["id"] in common)
    finally:
        sse.close()
        ws.close()


def test_a_busy_client_that_answers_pings_outlives_the_idle_timeout(strict):
    client = WSClient(ws_url(strict, "?pairs=BTC/USD,ETH/USD"))    # websocket-client answers pings itself
    try:
        started = client.wait_for(lambda c: c.of("price"), message="a price")[0].received_at
        # Prices flow all along; the client never sends a message of its own, only pongs.
        client.wait_for(lambda c: c.closed or (c.of("price") and c.of("price")[-1].received_at - started > 7),
                        timeout=15, message="7 s of prices, past the 3 s idle timeout")
        assert not client.closed, client.close_code
    finally:
        client.close()
