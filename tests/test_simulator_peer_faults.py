"""The simulator's faults for a peer like the real exchange: announce without closing, a quiet
market, a stalled connection, and hostile frames. Raw WebSocket clients over real sockets."""
from __future__ import annotations

import json
import time

import pytest
import websocket
from websocket import ABNF

from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=40, ping_interval=0.3, pong_timeout=5,
                          shutdown_grace=0.3) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def calm(sim):
    sim.fault(fault="clear")
    sim.market(paused=False)
    yield
    sim.fault(fault="clear")


def connect(sim) -> websocket.WebSocket:
    return websocket.create_connection(sim.ws_url + "/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade", timeout=5)


def frames_for(ws: websocket.WebSocket, seconds: float) -> list[tuple[int, bytes]]:
    """Every frame (pings included) received within `seconds`."""
    received, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ws.settimeout(left)
        try:
            opcode, frame = ws.recv_data_frame(control_frame=True)
        except websocket.WebSocketTimeoutException:
            break
        received.append((opcode, frame.data))
        if opcode == ABNF.OPCODE_CLOSE:
            break
    return received


def texts(frames) -> list[dict]:
    return [json.loads(data) for opcode, data in frames if opcode == ABNF.OPCODE_TEXT]


def test_shutdown_without_close_announces_and_keeps_the_connection_open(sim):
    ws = connect(sim)
    sim.fault(fault="shutdown", close=False)
    received = frames_for(ws, 1.0)   # > the 0.3 s grace
    assert any(m.get("data", {}).get("e") == "serverShutdown" for m in texts(received))
    assert ABNF.OPCODE_CLOSE not in [opcode for opcode, _ in received]
    assert sum(1 for m in texts(received) if m.get("data", {}).get("e") == "aggTrade") > 5, "data goes on"
    ws.close()


def test_a_quiet_market_pings_and_answers_but_sends_no_data(sim):
    ws = connect(sim)
    sim.fault(fault="quiet", duration=1.5)
    frames_for(ws, 0.2)   # what was already on the wire
    ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 7}))
    received = frames_for(ws, 1.0)
    assert texts(received) == [{"result": ["btcusdt@aggTrade", "ethusdt@aggTrade"], "id": 7}]
    assert any(opcode == ABNF.OPCODE_PING for opcode, _ in received)
    assert texts(frames_for(ws, 1.0)), "data resumes after the quiet"
    ws.close()


def test_a_stalled_connection_answers_nothing_and_sends_no_pings(sim):
    ws = connect(sim)
    sim.fault(fault="stall", duration=1.5)
    frames_for(ws, 0.2)
    ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
    assert frames_for(ws, 1.0) == []
    assert sim.stats()["replies_withheld"] >= 1
    ws.close()


def test_silence_withholds_data_and_control_replies_but_keeps_pinging(sim):
    ws = connect(sim)
    sim.fault(fault="silence", duration=1.5)
    frames_for(ws, 0.2)
    ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 9}))
    received = frames_for(ws, 1.0)
    assert texts(received) == [] and any(opcode == ABNF.OPCODE_PING for opcode, _ in received)
    ws.close()


def test_hostile_frames_are_sent_on_the_clients_own_stream(sim):
    ws = connect(sim)
    frames_for(ws, 0.2)
    sim.fault(fault="hostile", kind="symbol_unicode")
    hostile = [m for m in texts(frames_for(ws, 0.5)) if m["data"]["s"] == "BTCUSDTß"]
    assert hostile and hostile[0]["stream"] == "btcusdt@aggTrade"
    ws.close()


def test_ids_jump_back_restarts_the_markets_trade_ids(sim):
    before = sim.prices()["BTCUSDT"]["trade_id"]
    sim.fault(fault="hostile", kind="ids_jump_back")
    wait_until(lambda: sim.prices()["BTCUSDT"]["trade_id"] < before, 5, message="lower ids")


@pytest.mark.parametrize("body", [{"fault": "hostile"}, {"fault": "hostile", "kind": "meteor"},
                                  {"fault": "shutdown", "close": "no"}, {"fault": "quiet"}])
def test_bad_peer_fault_requests_are_refused(sim, body):
    assert sim.request("POST", "/_sim/fault", body)[0] == 400
