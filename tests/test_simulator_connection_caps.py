"""The simulator holds every connection to Binance's per-connection caps, and lets a test see them.

At most 1,024 streams a connection (in the handshake URL or added by SUBSCRIBE) and a
handshake request target of at most 8,000 characters, measured as sent (percent-encoded).
Past the target the handshake gets `414 URI Too Long`, what a front end answers for an
over-long request line (gevent's own server does so at 8,192); past the stream cap the
handshake gets `400` and a SUBSCRIBE gets Binance's error reply (code 2). `GET /_sim/stats`
lists each open connection's stream count and target length.
"""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import websocket

from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=20) as simulator:
        yield simulator


def open_streams(sim: SimulatorProcess, target: str) -> websocket.WebSocket:
    return websocket.create_connection(sim.ws_url + target, timeout=5)


def refusal(sim: SimulatorProcess, target: str) -> websocket.WebSocketBadStatusException:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        open_streams(sim, target).close()
    return info.value


def request(ws: websocket.WebSocket, method: str, params: list | None, request_id: int) -> dict:
    ws.send(json.dumps({"method": method, **({"params": params} if params is not None else {}),
                        "id": request_id}))
    while True:
        message = json.loads(ws.recv())
        if message.get("id") == request_id:
            return message


def target_of_length(length: int) -> tuple[str, int]:
    """A combined-stream target of exactly `length` characters, and its number of streams."""
    target, count = "/stream?streams=btcusdt@aggTrade", 1
    while length - len(target) > 60:
        target += f"/p{count:05d}usdt@aggTrade"
        count += 1
    return target + "/" + "x" * (length - len(target) - 1 - len("@aggTrade")) + "@aggTrade", count + 1


def test_a_target_of_8000_characters_is_served_and_one_more_is_refused_414(sim):
    before = sim.stats()["targets_too_long"]
    target, streams = target_of_length(8000)
    ws = open_streams(sim, target)
    try:
        mine = wait_until(lambda: [c for c in sim.stats()["open_connections"] if c["target_length"] == 8000],
                          5, message="the 8,000-character connection in /_sim/stats")
        assert mine == [{"streams": streams, "target_length": 8000}]
    finally:
        ws.close()
    error = refusal(sim, target_of_length(8001)[0])
    assert error.status_code == 414
    assert b"8001 characters" in (error.resp_body or b"")
    assert sim.stats()["targets_too_long"] == before + 1


def test_the_length_is_measured_percent_encoded_as_sent(sim):
    # Symbols with non-ASCII letters: about 5,000 characters as text, 11,000 on the wire.
    names = [f"éééééé{index:04d}usdt@aggTrade" for index in range(200)]
    assert len("/stream?streams=" + "/".join(names)) < 8000
    assert refusal(sim, "/stream?streams=" + "/".join(quote(name, safe="@") for name in names)).status_code == 414
    # Shorter, it is served, and the exchange reads the name decoded.
    name = "é" * 100 + "usdt@aggTrade"
    ws = open_streams(sim, "/stream?streams=" + quote(name, safe="@"))
    try:
        assert request(ws, "LIST_SUBSCRIPTIONS", None, 7)["result"] == [name]
        target = len("/stream?streams=" + quote(name, safe="@"))
        assert any(c == {"streams": 1, "target_length": target} for c in sim.stats()["open_connections"])
    finally:
        ws.close()


def test_more_than_1024_streams_in_the_url_are_refused_400(sim):
    before = sim.stats()["streams_refused"]
    streams = "/".join(f"s{index}@t" for index in range(1025))
    assert refusal(sim, "/stream?streams=" + streams).status_code == 400
    assert sim.stats()["streams_refused"] == before + 1
    ws = open_streams(sim, "/stream?streams=" + streams.rsplit("/", 1)[0])    # 1,024: served
    try:
        assert request(ws, "LIST_SUBSCRIPTIONS", None, 1)["result"][-1] == "s1023@t"
    finally:
        ws.close()


def test_subscribe_past_1024_streams_gets_an_error_and_changes_nothing(sim):
    before = sim.stats()["streams_refused"]
    ws = open_streams(sim, "/stream?streams=btcusdt@aggTrade")
    try:
        assert request(ws, "SUBSCRIBE", [f"a{index}@t" for index in range(1023)], 1) == {"result": None, "id": 1}
        reply = request(ws, "SUBSCRIBE", ["one@more"], 2)
        assert reply["code"] == 2 and "too many streams" in reply["msg"]
        assert len(request(ws, "LIST_SUBSCRIPTIONS", None, 3)["result"]) == 1024
        assert sim.stats()["streams_refused"] == before + 1
        assert {"streams": 1024, "target_length": len("/stream?streams=btcusdt@aggTrade")} in \
            sim.stats()["open_connections"]
    finally:
        ws.close()


def test_stats_count_each_open_connection_with_its_streams(sim):
    targets = ["/stream?streams=btcusdt@aggTrade", "/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade/x@y",
               "/ws/ethusdt@trade"]
    sockets = [open_streams(sim, target) for target in targets]
    try:
        expected = sorted([{"streams": 1, "target_length": len(targets[0])},
                           {"streams": 3, "target_length": len(targets[1])},
                           {"streams": 1, "target_length": len(targets[2])}], key=json.dumps)
        wait_until(lambda: sorted(sim.stats()["open_connections"], key=json.dumps) == expected, 5,
                   message="each connection's streams and target in /_sim/stats")
        assert sim.stats()["connections_open"] == 3
    finally:
        for ws in sockets:
            ws.close()


def test_a_fault_with_a_stream_hits_only_the_connections_subscribed_to_it(sim):
    first = open_streams(sim, "/stream?streams=btcusdt@aggTrade")
    second = open_streams(sim, "/stream?streams=ethusdt@aggTrade")
    try:
        wait_until(lambda: sim.stats()["connections_open"] == 2, 5, message="both connections open")
        assert sim.fault(fault="shutdown", stream="ethusdt@aggTrade", close=False)["affected"] == 1
        second.settimeout(5)
        while json.loads(second.recv()).get("data", {}).get("e") != "serverShutdown":
            pass
        first.settimeout(1)
        for _ in range(5):
            assert json.loads(first.recv())["data"]["e"] == "aggTrade"
    finally:
        first.close()
        second.close()
