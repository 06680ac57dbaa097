"""A host gates streams with `@feed.authorize`: its own Flask login decides who may open one,
over SSE and WebSocket, against real gunicorn (tests/support/login_app.py)."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until
from tests.support.ws_client import RawWebSocket, WSClient

PAIRS = "BTC/USD,ETH/USD"
STREAM = f"/api/market-data/stream?pairs={PAIRS}"
WS = f"/api/market-data/ws?pairs={PAIRS}"


@pytest.fixture(scope="module")
def server():
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=20) as sim:
        env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url, "PRICEFEED_PAIRS": PAIRS}
        with GunicornProcess(workers=1, env=env, app="tests.support.login_app:app") as app:
            wait_until(lambda: app.health()["mode"] == "live", 20, message="live mode")
            yield app


def log_in(server, user: str) -> str:
    """POST the host's login form; the Cookie header its answer sets."""
    request = urllib.request.Request(server.url + "/login", data=urllib.parse.urlencode({"user": user}).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        cookie = response.headers["Set-Cookie"]
    return cookie.split(";", 1)[0]


def test_without_logging_in_a_stream_is_refused_401_in_json(server):
    stream = SSEClient(server.url + STREAM)
    assert stream.status == 401
    assert json.loads(stream.body)["error"] == "unauthorized"
    socket = RawWebSocket(server.port, WS)
    try:
        assert socket.status == 401
        assert json.loads(socket.body())["error"] == "unauthorized"
    finally:
        socket.close()


def test_a_logged_in_user_streams_prices_over_sse_and_websocket(server):
    cookie = log_in(server, "alice")
    stream = SSEClient(server.url + STREAM, headers={"Cookie": cookie})
    ws = WSClient(f"ws://127.0.0.1:{server.port}{WS}", cookie=cookie)
    try:
        assert stream.status == 200
        stream.wait_for(lambda s: s.of("snapshot") and s.of("price"), message="a snapshot and prices")
        ws.wait_for(lambda w: w.of("snapshot") and w.of("price"), message="a snapshot and prices")
    finally:
        stream.close()
        ws.close()


def test_a_user_whose_plan_has_no_prices_is_refused_403(server):
    cookie = log_in(server, "bob")
    stream = SSEClient(server.url + STREAM, headers={"Cookie": cookie})
    assert stream.status == 403 and json.loads(stream.body)["error"] == "forbidden"
    socket = RawWebSocket(server.port, WS, headers={"Cookie": cookie})
    try:
        assert socket.status == 403 and json.loads(socket.body())["error"] == "forbidden"
    finally:
        socket.close()


def test_after_logging_out_the_same_cookie_opens_no_stream(server):
    cookie = log_in(server, "alice")
    request = urllib.request.Request(server.url + "/logout", method="POST", headers={"Cookie": cookie})
    urllib.request.urlopen(request, timeout=5).close()
    stream = SSEClient(server.url + STREAM, headers={"Cookie": cookie})
    assert stream.status == 401


def test_the_host_apps_own_routes_and_the_json_endpoints_are_not_gated_by_it(server):
    status, body = server.get(f"/api/market-data/prices?pairs={PAIRS}")
    assert status == 200 and json.loads(body)["prices"]
