"""The Binance-compatible simulator honours the protocol in BINANCE.md, over real sockets.

Every test talks to a real `python -m pricefeed.simulator` process with
websocket-client and urllib, as the upstream client and the service would.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import websocket
from websocket import ABNF

from tests.conftest import capture_frames, fixture_path, last_trade_prices
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until

CAPTURE = "cryptofeed-BINANCE.ws.1.0.txt"
PRICE = re.compile(r"^\d+\.\d{8}$")
AGG_TRADE_KEYS = {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}
TRADE_KEYS = {"e", "E", "s", "t", "p", "q", "T", "m", "M"}
BOOK_TICKER_KEYS = {"u", "s", "b", "B", "a", "A"}


# -- helpers -------------------------------------------------------------------------

def connect(sim: SimulatorProcess, path: str, **options: Any) -> websocket.WebSocket:
    return websocket.create_connection(sim.ws_url + path, timeout=5, **options)


def next_frame(ws: websocket.WebSocket, timeout: float = 5.0) -> tuple[int, bytes]:
    """The next frame, control frames included (pings are answered by websocket-client)."""
    ws.settimeout(timeout)
    opcode, frame = ws.recv_data_frame(control_frame=True)
    return opcode, frame.data


def messages(ws: websocket.WebSocket, timeout: float = 5.0) -> Iterator[Any]:
    """Parsed text messages until `timeout` passes (then the test fails)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no expected message within {timeout}s")
        opcode, data = next_frame(ws, remaining)
        if opcode == ABNF.OPCODE_TEXT:
            yield json.loads(data)
        elif opcode == ABNF.OPCODE_CLOSE:
            raise AssertionError(f"connection closed: {data!r}")


def first(ws: websocket.WebSocket, predicate: Callable[[Any], bool], timeout: float = 5.0) -> Any:
    return next(message for message in messages(ws, timeout) if predicate(message))


def take(ws: websocket.WebSocket, count: int, timeout: float = 5.0) -> list[Any]:
    received = []
    for message in messages(ws, timeout):
        received.append(message)
        if len(received) == count:
            return received
    return received


def close_frame(ws: websocket.WebSocket, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the server's close frame; its (code, reason)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        opcode, data = next_frame(ws, deadline - time.monotonic())
        if opcode == ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", data[:2])[0], data[2:].decode()
    raise AssertionError("no close frame")


def ends_without_close_frame(ws: websocket.WebSocket, timeout: float = 5.0) -> bool:
    """True if the TCP connection ends with no close frame before it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(deadline - time.monotonic())
        try:
            frame = ws.recv_frame()   # low level: never answers pings
        except websocket.WebSocketConnectionClosedException:
            return True
        if frame.opcode == ABNF.OPCODE_CLOSE:
            return False
    raise AssertionError("connection still open")


def request(ws: websocket.WebSocket, method: str, params: Any = None, request_id: Any = 1) -> Any:
    body = {"method": method, "id": request_id}
    if params is not None:
        body["params"] = params
    ws.send(json.dumps(body))
    return first(ws, lambda m: isinstance(m, dict) and "id" in m and "stream" not in m)


def is_agg_trade(data: Any) -> bool:
    return isinstance(data, dict) and data.get("e") == "aggTrade"


# -- fixtures -------------------------------------------------------------------------

def fresh(sim: SimulatorProcess, rate: int) -> SimulatorProcess:
    """`sim` with no faults, a running market, no connections and zeroed stats."""
    sim.fault(fault="clear")
    sim.market(paused=False, rate=rate)
    wait_until(lambda: sim.stats()["connections_open"] == 0, 10,
               message="earlier tests' connections to close")
    sim.reset_stats()
    return sim


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(rate=50, seed=7, shutdown_grace=0.5) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim: SimulatorProcess) -> SimulatorProcess:
    return fresh(shared_sim, rate=50)


@pytest.fixture(scope="module")
def shared_ping_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(rate=20, ping_interval=0.3, pong_timeout=1.0) as sim:
        yield sim


@pytest.fixture
def ping_sim(shared_ping_sim: SimulatorProcess) -> SimulatorProcess:
    """A simulator that pings every 0.3 s and drops a client 1 s after an unanswered ping."""
    return fresh(shared_ping_sim, rate=20)


# -- streams and payloads ----------------------------------------------------------------

def test_combined_stream_wraps_aggtrades_with_string_prices_and_contiguous_ids(sim):
    ws = connect(sim, "/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade")
    events = take(ws, 20)
    ws.close()
    ids: dict[str, list[int]] = {}
    for event in events:
        assert set(event) == {"stream", "data"}
        data = event["data"]
        assert set(data) == AGG_TRADE_KEYS
        assert event["stream"] == f"{data['s'].lower()}@aggTrade"
        assert PRICE.match(data["p"]) and PRICE.match(data["q"]), data
        assert data["f"] == data["l"] and data["T"] <= data["E"]
        ids.setdefault(data["s"], []).append(data["a"])
    assert set(ids) == {"BTCUSDT", "ETHUSDT"}
    for symbol_ids in ids.values():
        assert symbol_ids == list(range(symbol_ids[0], symbol_ids[0] + len(symbol_ids)))


def test_raw_stream_sends_the_payload_alone(sim):
    ws = connect(sim, "/ws/btcusdt@aggTrade")
    events = take(ws, 5)
    ws.close()
    assert all(set(event) == AGG_TRADE_KEYS and event["s"] == "BTCUSDT" for event in events)


def test_trade_and_book_ticker_have_binance_spot_shapes(sim):
    ws = connect(sim, "/stream?streams=btcusdt@trade/btcusdt@bookTicker")
    trade = first(ws, lambda m: m["stream"] == "btcusdt@trade")["data"]
    book = first(ws, lambda m: m["stream"] == "btcusdt@bookTicker")["data"]
    ws.close()
    assert set(trade) == TRADE_KEYS and trade["e"] == "trade" and PRICE.match(trade["p"])
    assert set(book) == BOOK_TICKER_KEYS, "Spot bookTicker has no e/E"
    assert Decimal(book["b"]) < Decimal(book["a"])


def test_tickers_and_klines_arrive_each_second(sim):
    ws = connect(sim, "/stream?streams=btcusdt@miniTicker/btcusdt@ticker/btcusdt@kline_1m/!miniTicker@arr")
    seen: dict[str, Any] = {}
    for message in messages(ws, 5):
        seen[message["stream"]] = message["data"]
        if len(seen) == 4:
            break
    ws.close()
    assert seen["btcusdt@miniTicker"]["e"] == "24hrMiniTicker"
    assert seen["btcusdt@ticker"]["e"] == "24hrTicker" and PRICE.match(seen["btcusdt@ticker"]["c"])
    kline = seen["btcusdt@kline_1m"]
    assert kline["e"] == "kline" and kline["k"]["i"] == "1m" and kline["k"]["T"] - kline["k"]["t"] == 59_999
    assert all(item["e"] == "24hrMiniTicker" for item in seen["!miniTicker@arr"])


def test_microsecond_time_unit_scales_timestamps(sim):
    ws = connect(sim, "/ws/btcusdt@aggTrade?timeUnit=MICROSECOND")
    event = take(ws, 1)[0]
    ws.close()
    assert abs(event["E"] - time.time() * 1_000_000) < 10_000_000


def test_every_response_identifies_the_simulator(sim):
    ws = connect(sim, "/ws/btcusdt@aggTrade")
    headers = ws.getheaders()
    assert headers is not None and headers["x-pricefeed-simulator"] == "1"
    ws.close()
    for method, path in [("GET", "/api/v3/ticker/price?symbol=BTCUSDT"), ("GET", "/_sim/stats"),
                         ("GET", "/nowhere"), ("POST", "/_sim/fault")]:
        _, headers, _ = sim.request(method, path, {} if method == "POST" else None)
        assert headers.get("X-Pricefeed-Simulator") == "1", path


def test_unknown_symbols_are_accepted_and_get_no_data(sim):
    ws = connect(sim, "/stream?streams=nosuchcoin@aggTrade/btcusdt@aggTrade")
    streams = {message["stream"] for message in take(ws, 10)}
    ws.close()
    assert streams == {"btcusdt@aggTrade"}


# -- live control -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/ws", "/stream"])
def test_subscribe_list_and_unsubscribe_change_what_a_connection_receives(sim, path):
    ws = connect(sim, path)
    assert request(ws, "SUBSCRIBE", ["btcusdt@aggTrade"], 1) == {"result": None, "id": 1}
    event = first(ws, lambda m: "e" in m or "stream" in m)
    data = event["data"] if path == "/stream" else event
    assert is_agg_trade(data) and data["s"] == "BTCUSDT"
    assert ("stream" in event) == (path == "/stream"), "combined endpoints wrap, raw ones don't"
    assert request(ws, "LIST_SUBSCRIPTIONS", request_id=2) == {"result": ["btcusdt@aggTrade"], "id": 2}
    assert request(ws, "UNSUBSCRIBE", ["btcusdt@aggTrade"], 3) == {"result": None, "id": 3}
    assert request(ws, "LIST_SUBSCRIPTIONS", request_id=4) == {"result": [], "id": 4}
    ws.close()


def test_combined_property_switches_a_raw_connection_to_wrapped_events(sim):
    ws = connect(sim, "/ws/btcusdt@aggTrade")
    assert request(ws, "SET_PROPERTY", ["combined", True], 1) == {"result": None, "id": 1}
    assert request(ws, "GET_PROPERTY", ["combined"], 2) == {"result": True, "id": 2}
    wrapped = first(ws, lambda m: "stream" in m)
    ws.close()
    assert wrapped["stream"] == "btcusdt@aggTrade" and is_agg_trade(wrapped["data"])


@pytest.mark.parametrize("text, code, request_id", [
    ('{"method": "SUBSCRIBE", "params": [', 3, None),
    ('{"method": "SUBSCRIBE", "params": "btcusdt@aggTrade", "id": 5}', 2, 5),
    ('{"method": "SUBSCRIBE", "params": [7], "id": 6}', 2, 6),
    ('{"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": true}', 2, None),
    ('{"method": "HELLO", "id": 7}', 2, 7),
    ('{"method": "SET_PROPERTY", "params": ["colour", true], "id": 8}', 0, 8),
    ('{"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 9}', 1, 9),
])
def test_bad_control_requests_get_binance_error_codes(sim, text, code, request_id):
    ws = connect(sim, "/ws")
    ws.send(text)
    reply = take(ws, 1)[0]
    ws.close()
    assert reply["code"] == code and reply["id"] == request_id and reply["msg"]


@pytest.mark.parametrize("flood", ["text", "ping"])
def test_more_than_five_incoming_messages_in_a_second_closes_with_1008(sim, flood):
    ws = connect(sim, "/ws")
    for number in range(6):
        if flood == "text":
            ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": number}))
        else:
            ws.ping(str(number))
    assert close_frame(ws) == (1008, "Too many requests")
    assert sim.stats()["closes_1008"] == 1


# -- pings, pongs, lifetime -----------------------------------------------------------------------

class Ponger(threading.Thread):
    """Reads with websocket-client's normal API, which answers every ping with its payload."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        super().__init__(daemon=True)
        self.ws, self.closed, self.stop = ws, False, False

    def run(self) -> None:
        while not self.stop:
            try:
                self.ws.settimeout(0.2)
                opcode, _ = self.ws.recv_data_frame(control_frame=True)
                self.closed = opcode == ABNF.OPCODE_CLOSE
            except websocket.WebSocketTimeoutException:
                continue
            except websocket.WebSocketException:
                self.closed = True
            if self.closed:
                return


def test_client_that_never_pongs_is_dropped_after_pong_timeout_while_one_that_pongs_stays(ping_sim):
    answering = Ponger(connect(ping_sim, "/ws"))
    answering.start()
    silent = connect(ping_sim, "/ws")
    opened = time.monotonic()
    first_ping = silent.recv_frame()
    assert first_ping.opcode == ABNF.OPCODE_PING and first_ping.data, "pings carry a payload"
    assert ends_without_close_frame(silent, timeout=5)
    assert 1.0 <= time.monotonic() - opened <= 3.0   # ping after 0.3 s + 1 s pong timeout
    stats = ping_sim.stats()
    assert stats["pong_timeouts"] == 1 and stats["connections_open"] == 1 and not answering.closed
    assert stats["pongs_matched"] >= 1
    answering.stop = True
    answering.join()
    answering.ws.close()


def test_unsolicited_pongs_do_not_keep_a_connection_alive(ping_sim):
    ws = connect(ping_sim, "/ws")
    opened = time.monotonic()
    closed = False
    while not closed and time.monotonic() - opened < 5:
        ws.pong("not-an-answer")
        ws.settimeout(0.4)
        try:
            frame = ws.recv_frame()
            assert frame.opcode != ABNF.OPCODE_CLOSE
        except websocket.WebSocketTimeoutException:
            continue
        except websocket.WebSocketConnectionClosedException:
            closed = True
    assert closed and time.monotonic() - opened < 3.0


def test_pongs_ignored_by_the_server_get_an_answering_client_dropped(ping_sim):
    ponger = Ponger(connect(ping_sim, "/ws"))
    ponger.start()
    reply = ping_sim.fault(fault="ignore_pongs", duration=3)
    assert reply["ok"] and reply["affected"] == 1
    wait_until(lambda: ponger.closed, 4, message="the ponging client to be dropped")
    stats = ping_sim.stats()
    assert stats["pongs_ignored"] >= 1 and stats["pong_timeouts"] == 1
    ping_sim.fault(fault="clear")


def test_connection_is_closed_with_1000_at_its_maximum_lifetime():
    with SimulatorProcess(rate=20, max_lifetime=1) as sim:
        ws = connect(sim, "/ws/btcusdt@aggTrade")
        opened = time.monotonic()
        code, _ = close_frame(ws, timeout=5)
        assert code == 1000 and 0.9 <= time.monotonic() - opened < 3
        assert sim.stats()["lifetime_closes"] == 1


# -- faults -------------------------------------------------------------------------------------------

def test_drop_fault_ends_connections_without_a_close_frame(sim):
    ws = connect(sim, "/ws/btcusdt@aggTrade")
    take(ws, 1)
    assert sim.fault(fault="drop")["affected"] == 1
    assert ends_without_close_frame(ws)


def test_silence_fault_keeps_the_connection_but_sends_no_data_while_the_market_moves(sim):
    ws = connect(sim, "/ws/btcusdt@aggTrade")
    last_before = take(ws, 1)[0]
    assert sim.fault(fault="silence", duration=1)["affected"] == 1
    silenced_at = time.monotonic()
    for event in messages(ws, 5):
        if time.monotonic() - silenced_at > 0.3:   # past the frames already on the wire
            resumed, resumed_at = event, time.monotonic()
            break
        last_before = event
    ws.close()
    assert resumed_at - silenced_at >= 0.9
    assert resumed["a"] > last_before["a"] + 1, "the market moved on during the silence"
    assert sim.stats()["connections_total"] == 1, "the connection stayed open"


def test_malformed_fault_sends_each_kind_of_bad_frame_then_continues(sim):
    ws = connect(sim, "/stream?streams=btcusdt@aggTrade")
    take(ws, 1)
    sim.fault(fault="malformed", count=6)
    kinds: set[str] = set()
    while len(kinds) < 6:
        opcode, data = next_frame(ws)
        if opcode == ABNF.OPCODE_BINARY:
            kinds.add("binary")
            continue
        try:
            message = json.loads(data)
        except ValueError:
            kinds.add("invalid_json")
            continue
        payload = message.get("data", message)
        if payload == {}:
            kinds.add("empty")
        elif payload.get("e") not in ("aggTrade",):
            kinds.add("unknown_event")
        elif "p" not in payload:
            kinds.add("missing_fields")
        elif not isinstance(payload["p"], str):
            kinds.add("number_price")
    assert is_agg_trade(first(ws, lambda m: isinstance(m.get("data", {}).get("p"), str))["data"])
    ws.close()
    assert sim.stats()["malformed_sent"] == 6


def test_refuse_fault_rejects_the_next_handshakes_with_status_and_retry_after(sim):
    sim.fault(fault="refuse", status=429, count=2, retry_after=3)
    for _ in range(2):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            connect(sim, "/ws/btcusdt@aggTrade")
        assert refused.value.status_code == 429
        headers = refused.value.resp_headers
        assert headers is not None
        assert headers["retry-after"] == "3"
        assert headers["x-pricefeed-simulator"] == "1"
    connect(sim, "/ws/btcusdt@aggTrade").close()
    assert sim.stats()["handshakes_refused"] == 2


def test_refuse_fault_with_a_duration_refuses_until_it_expires(sim):
    sim.fault(fault="refuse", status=418, duration=0.5)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(sim, "/ws")
    assert refused.value.status_code == 418

    def accepted() -> bool:
        connect(sim, "/ws").close()
        return True
    wait_until(accepted, 3, message="handshakes accepted again")


def test_close_fault_closes_every_connection_with_the_given_code(sim):
    connections = [connect(sim, "/ws/btcusdt@aggTrade"), connect(sim, "/stream")]
    assert sim.fault(fault="close", code=1008, reason="Too many requests")["affected"] == 2
    assert [close_frame(ws) for ws in connections] == [(1008, "Too many requests")] * 2


def test_shutdown_fault_announces_server_shutdown_then_closes_after_the_grace(sim):
    combined, raw = connect(sim, "/stream?streams=btcusdt@aggTrade"), connect(sim, "/ws/btcusdt@aggTrade")
    sim.fault(fault="shutdown")
    announced_at = time.monotonic()
    notice = first(combined, lambda m: m["stream"] == "!serverShutdown")
    assert notice["data"]["e"] == "serverShutdown" and isinstance(notice["data"]["E"], int)
    assert first(raw, lambda m: m.get("e") == "serverShutdown")["E"] > 0
    assert is_agg_trade(first(combined, lambda m: m["stream"] == "btcusdt@aggTrade")["data"]), \
        "data keeps flowing during the grace period"
    assert close_frame(combined)[0] == 1001 and close_frame(raw)[0] == 1001
    assert time.monotonic() - announced_at >= 0.4   # --shutdown-grace 0.5


def test_rest_fault_fails_rest_requests_until_cleared(sim):
    sim.fault(fault="rest", status=500, duration=30)
    status, _, body = sim.request("GET", "/api/v3/ticker/price?symbol=BTCUSDT")
    assert status == 500 and json.loads(body)["code"] == -1000
    sim.fault(fault="rest", status=429, duration=30, retry_after=7)
    status, headers, _ = sim.request("GET", "/api/v3/ticker/price?symbol=BTCUSDT")
    assert status == 429 and headers["Retry-After"] == "7"
    sim.fault(fault="clear")
    assert sim.request("GET", "/api/v3/ticker/price?symbol=BTCUSDT")[0] == 200


@pytest.mark.parametrize("body", [{"fault": "meteor"}, {"fault": "silence"}, {"fault": "drop", "x": 1},
                                  ["drop"], {"fault": "close", "code": 1006}])
def test_bad_fault_requests_are_rejected_with_a_json_error(sim, body):
    status, _, raw = sim.request("POST", "/_sim/fault", body)
    assert status == 400 and json.loads(raw)["error"]


# -- REST -----------------------------------------------------------------------------------------------

def test_rest_ticker_endpoints_answer_like_binance_and_report_weight(sim):
    status, headers, body = sim.request("GET", "/api/v3/ticker/price?symbol=BTCUSDT")
    assert status == 200 and set(json.loads(body)) == {"symbol", "price"}
    used = int(headers["X-MBX-USED-WEIGHT-1M"])
    status, headers, body = sim.request("GET", '/api/v3/ticker/price?symbols=%5B%22BTCUSDT%22,%22ETHUSDT%22%5D')
    assert [row["symbol"] for row in json.loads(body)] == ["BTCUSDT", "ETHUSDT"]
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) in (used + 4, 4)   # 4, or a new minute began
    every = json.loads(sim.request("GET", "/api/v3/ticker/price")[2])
    assert {row["symbol"] for row in every} == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"}
    assert all(PRICE.match(row["price"]) for row in every)
    book = json.loads(sim.request("GET", "/api/v3/ticker/bookTicker?symbol=ETHUSDT")[2])
    assert set(book) == {"symbol", "bidPrice", "bidQty", "askPrice", "askQty"}
    assert json.loads(sim.request("GET", "/api/v3/ping")[2]) == {}
    assert abs(json.loads(sim.request("GET", "/api/v3/time")[2])["serverTime"] - time.time() * 1000) < 5000
    status, _, body = sim.request("GET", "/api/v3/ticker/price?symbol=NOSUCHUSDT")
    assert status == 400 and json.loads(body) == {"code": -1121, "msg": "Invalid symbol."}
    assert sim.stats()["rest_requests"] == 7


def test_rest_over_the_weight_limit_gets_429_with_retry_after():
    with SimulatorProcess(rate=5, rest_weight_limit=10) as sim:
        for _ in range(12):
            status, headers, body = sim.request("GET", "/api/v3/ticker/price")
            if status == 429:
                break
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert json.loads(body)["code"] == -1003 and int(headers["X-MBX-USED-WEIGHT-1M"]) > 10


# -- market control, prices, stats -----------------------------------------------------------------

def test_paused_market_leaves_prices_equal_to_the_last_trades_sent(sim):
    ws = connect(sim, "/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade/solusdt@aggTrade")
    last = {event["data"]["s"]: event["data"] for event in take(ws, 10)}
    assert sim.market(paused=True)["paused"] is True
    final = sim.prices()

    def client_caught_up() -> bool:
        ws.settimeout(0.2)
        try:
            data = json.loads(ws.recv())["data"]
            last[data["s"]] = data
        except websocket.WebSocketTimeoutException:
            pass
        return all(last.get(s, {}).get("a") == final[s]["trade_id"] for s in last) and len(last) == 3

    wait_until(client_caught_up, 5, message="the client to receive the final trades")
    ws.close()
    for symbol, data in last.items():
        assert final[symbol] == {"price": data["p"], "ts": data["T"], "trade_id": data["a"]}
    assert sim.prices() == final, "a paused market does not trade"


def test_stats_count_connections_and_data_messages(sim):
    sim.market(paused=True)
    first_ws, second_ws = connect(sim, "/ws/btcusdt@aggTrade"), connect(sim, "/ws")
    wait_until(lambda: sim.stats()["connections_open"] == 2, 5, message="two connections")
    stats = sim.reset_stats()
    assert (stats["connections_total"], stats["max_concurrent"], stats["messages_sent"]) == (0, 2, 0)
    sim.market(paused=False, rate=100)
    received = len(take(first_ws, 10))
    sim.market(paused=True)

    def all_received() -> bool:
        nonlocal received
        first_ws.settimeout(0.2)
        try:
            first_ws.recv()
            received += 1
        except websocket.WebSocketTimeoutException:
            pass
        return sim.stats()["messages_sent"] == received

    wait_until(all_received, 5, message="messages_sent to equal the data frames received")
    third = connect(sim, "/ws")
    stats = sim.stats()
    assert (stats["connections_total"], stats["max_concurrent"], stats["connections_open"]) == (1, 3, 3)
    assert sorted(c["streams"] == ["btcusdt@aggTrade"] for c in sim.connections()) == [False, False, True]
    for ws in (first_ws, second_ws, third):
        ws.close()
    wait_until(lambda: sim.stats()["connections_open"] == 0, 5, message="connections closed")


def test_market_control_rejects_bad_bodies(sim):
    assert sim.request("POST", "/_sim/market", {"paused": "yes"})[0] == 400
    assert sim.request("POST", "/_sim/market", {"rate": -1})[0] == 400
    assert sim.market(rate=5)["rate"] == 5


def test_slow_reader_loses_its_oldest_frames_without_stalling_others():
    with SimulatorProcess(rate=2000, outbox_limit=20) as sim:
        streams = "/".join(f"{s}@{kind}" for s in ("btcusdt", "ethusdt", "solusdt", "bnbusdt", "xrpusdt")
                           for kind in ("aggTrade", "trade", "bookTicker"))
        stuck = connect(sim, f"/stream?streams={streams}",
                        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
        reader = connect(sim, "/ws/btcusdt@aggTrade")
        wait_until(lambda: sim.stats()["outbox_dropped"] > 0, 10, message="the stuck reader's outbox to overflow")
        ids = [event["a"] for event in take(reader, 200)]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "the reading client lost nothing"
        reader.close()
        stuck.close()


# -- replay -------------------------------------------------------------------------------------------------

def test_replay_sends_captured_frames_verbatim_and_ends_with_the_captures_last_prices():
    captured_trades = [frame for frame in capture_frames(CAPTURE) if '@aggTrade"' in frame]
    streams = sorted({json.loads(frame)["stream"] for frame in captured_trades})
    with SimulatorProcess(replay=str(fixture_path(CAPTURE)), speed=20) as sim:
        assert sim.market()["started"] is False and sim.prices() == {}, "replay waits for a client"
        combined = connect(sim, "/stream?streams=" + "/".join(streams))
        raw = connect(sim, "/ws/ftmusdt@aggTrade")
        received = [combined.recv() for _ in captured_trades]
        assert received == captured_trades
        raw_event = json.loads(raw.recv())
        assert raw_event in [json.loads(f)["data"] for f in captured_trades if "ftmusdt@" in f]
        wait_until(lambda: sim.market()["finished"], 5, message="the replay to finish")
        assert {symbol: entry["price"] for symbol, entry in sim.prices().items()} == last_trade_prices(CAPTURE)
        combined.close()
        raw.close()


def test_replay_of_json_lines_samples_as_fast_as_possible():
    with SimulatorProcess(replay=str(fixture_path("unicornfy-spot-samples.jsonl")), speed=0) as sim:
        ws = connect(sim, "/stream?streams=btcusdt@aggTrade/btcusdt@trade")
        streams = [message["stream"] for message in take(ws, 2)]
        ws.close()
        assert streams == ["btcusdt@trade", "btcusdt@aggTrade"]
        wait_until(lambda: sim.market()["finished"], 5, message="the replay to finish")
        assert sim.prices()["BTCUSDT"] == {"price": "9319.00000000", "ts": 1592584651516, "trade_id": 315753210}


# -- process ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_simulator_cleanly_closing_connections_as_going_away(signum):
    with SimulatorProcess(rate=20) as sim:
        ws = connect(sim, "/ws/btcusdt@aggTrade")
        take(ws, 1)
        sim.proc.send_signal(signum)
        assert close_frame(ws)[0] == 1001
        assert sim.proc.wait(timeout=5) == 0
