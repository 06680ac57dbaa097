"""The simulator's catalogue and what it does with names it does not list, like Binance (BINANCE.md,
"The catalogue ..." and "Region blocks"), over real sockets."""
from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import pytest
import websocket

from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs="BTCUSD,BTCUSDT,ETHUSDT,币安人生USDT", status="ETHUSDT=HALT", rate=40,
                          rest_weight_limit=1200, nested_errors=True) as simulator:
        wait_until(lambda: {"BTCUSD", "BTCUSDT", "币安人生USDT"} <= set(simulator.prices()), 10,
                   message="a trade on each trading symbol")
        yield simulator


def get(sim, path: str) -> tuple[int, Any]:
    status, headers, body = sim.request("GET", path)
    return status, json.loads(body)


def test_exchange_info_lists_symbols_with_status_assets_and_the_weight_limit(sim):
    status, info = get(sim, "/api/v3/exchangeInfo")
    assert status == 200
    assert {s["symbol"]: (s["status"], s["baseAsset"], s["quoteAsset"]) for s in info["symbols"]} == {
        "BTCUSD": ("TRADING", "BTC", "USD"), "BTCUSDT": ("TRADING", "BTC", "USDT"),
        "ETHUSDT": ("HALT", "ETH", "USDT"), "币安人生USDT": ("TRADING", "币安人生", "USDT")}
    assert {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200} in info["rateLimits"]


def test_one_unknown_symbol_fails_a_symbols_list_and_symbol_status_filters_or_refuses(sim):
    unknown = urllib.parse.quote(json.dumps(["BTCUSDT", "DOGEUSDT"]))
    for path in ("/api/v3/ticker/24hr", "/api/v3/ticker/price", "/api/v3/exchangeInfo"):
        assert get(sim, f"{path}?symbols={unknown}") == (400, {"code": -1121, "msg": "Invalid symbol."})
    status, rows = get(sim, "/api/v3/ticker/24hr?type=MINI&symbolStatus=TRADING")
    assert status == 200 and {row["symbol"] for row in rows} == {"BTCUSD", "BTCUSDT", "币安人生USDT"}
    status, body = get(sim, "/api/v3/ticker/24hr?symbol=ETHUSDT&symbolStatus=TRADING")
    assert status == 400 and body["code"] == -1220


def test_the_24h_ticker_gives_the_last_price_with_the_time_of_the_last_trade(sim):
    sim.market(paused=True)
    try:
        last = sim.prices()
        _, rows = get(sim, "/api/v3/ticker/24hr?type=MINI")
        by_symbol = {row["symbol"]: row for row in rows}
        for symbol in ("BTCUSD", "BTCUSDT"):
            assert (by_symbol[symbol]["lastPrice"], by_symbol[symbol]["closeTime"]) == (last[symbol]["price"], last[symbol]["ts"])
    finally:
        sim.market(paused=False)


def test_a_halted_symbol_and_an_unlisted_one_are_accepted_on_a_stream_and_never_send(sim):
    ws = websocket.create_connection(sim.ws_url + "/stream?streams=ethusdt@aggTrade/dogeusdt@aggTrade/"
                                     + urllib.parse.quote("币安人生usdt@aggTrade", safe="@"), timeout=5)
    try:
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 7}))
        symbols, deadline = set(), time.monotonic() + 3
        listed: list[str] | None = None
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message.get("id") == 7:
                listed = message["result"]
            elif "data" in message:
                symbols.add(message["data"]["s"])
        assert listed is not None and set(listed) == {"ethusdt@aggTrade", "dogeusdt@aggTrade", "币安人生usdt@aggTrade"}
        assert symbols == {"币安人生USDT"}     # the halted and the unlisted ones: silence, no error
    finally:
        ws.close()


def test_control_errors_come_nested_when_asked_to(sim):
    ws = websocket.create_connection(sim.ws_url + "/ws", timeout=5)
    try:
        ws.send(json.dumps({"method": "NOPE", "id": 3}))
        reply = json.loads(ws.recv())
        assert set(reply) == {"error", "id"} and reply["error"]["code"] == 2 and reply["id"] == 3
    finally:
        ws.close()


@pytest.mark.parametrize("status", [451, 403])
def test_a_block_refuses_every_handshake_and_every_rest_request_until_cleared(sim, status):
    sim.fault(fault="block", status=status)
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(sim.ws_url + "/ws/btcusdt@aggTrade", timeout=5)
        assert refused.value.status_code == status
        assert sim.request("GET", "/api/v3/exchangeInfo")[0] == status
        assert sim.request("GET", "/api/v3/ticker/24hr")[0] == status
    finally:
        sim.fault(fault="clear")
    assert sim.request("GET", "/api/v3/exchangeInfo")[0] == 200


def test_a_delisted_symbol_leaves_the_catalogue(sim):
    sim.list_symbol("BTCUSDT", None)
    try:
        _, info = get(sim, "/api/v3/exchangeInfo")
        assert "BTCUSDT" not in {s["symbol"] for s in info["symbols"]}
    finally:
        sim.list_symbol("BTCUSDT", "TRADING")
