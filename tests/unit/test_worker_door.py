"""The door of a shedding worker (server/accept.py with the app's web/streams/door.py): which
requests it answers, and the bytes it sends.

Real sockets (a connected pair) and a real LoadShedder; gunicorn's normal path is a stand-in
that records what reached it. The whole path under gunicorn is
tests/integration/test_overload_and_restart.py.
"""
from __future__ import annotations

import bisect
import json
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from pricefeed.config import Config
from pricefeed.delivery.load_shedder import LoadShedder
from pricefeed.node import Node
from pricefeed.pairs import PairError
from pricefeed.server.accept import answered_at_the_door
from pricefeed.web.streams.door import StreamDoor, is_plain_request_for
from tests.support.doubles import stand_in

PATH = b"/api/market-data/stream"


def head(line: bytes = b"GET /api/market-data/stream?pairs=BTC/USD HTTP/1.1", *headers: bytes) -> bytes:
    return b"\r\n".join((line, b"Host: example.test", *headers)) + b"\r\n\r\n"


@pytest.mark.parametrize("request_head, door", [
    (head(), True),
    (head(b"GET /api/market-data/stream HTTP/1.0"), True),
    (head(b"GET /api/market-data/stream?pairs=BTC/USD HTTP/1.1", b"Accept: text/event-stream"), True),
    (head(b"GET /api/market-data/prices HTTP/1.1"), False),              # not a stream
    (head(b"GET /api/market-data/streamx HTTP/1.1"), False),
    (head(b"GET /api/market-data/ws HTTP/1.1", b"Upgrade: websocket"), False),
    (head(b"POST /api/market-data/stream HTTP/1.1"), False),
    (head(b"HEAD /api/market-data/stream HTTP/1.1"), False),
    (head(b"GET /api/market-data/stream HTTP/2.0"), False),
    (head(b"GET  /api/market-data/stream HTTP/1.1"), False),             # malformed: gunicorn's to answer
    (head(b"GET /api/market-data/stream HTTP/1.1", b"Origin: https://shop.example"), False),   # CORS
    (head(b"GET /api/market-data/stream HTTP/1.1", b"oRiGiN: https://shop.example"), False),
    (head(b"GET /api/market-data/stream HTTP/1.1", b"Content-Length: 5"), False),   # a body to read
    (head(b"GET /api/market-data/stream HTTP/1.1", b"Transfer-Encoding: chunked"), False),
])
def test_only_a_plain_same_origin_stream_request_is_answered_at_the_door(request_head, door):
    assert is_plain_request_for(request_head, frozenset({PATH})) is door


class Catalog:
    """The served catalog's part the door's query check asks: BTC/USD is served, nothing else."""

    def resolve_list(self, raw, limit):
        if raw is not None and raw != "BTC/USD":
            raise PairError("unknown_pair", f"{raw} is not served here")
        return [SimpleNamespace(name="BTC/USD")]


class Door:
    """The app's door and the worker's use of it, with a connected socket pair per request."""

    def __init__(self, shedding: bool, prefix: str = "/api/market-data"):
        # A long bound, so the shedder does not stop (a whole bound without a flush) mid-test.
        self.shedder = LoadShedder(bound_s=10, retry_after_s=2, retry_jitter_s=3, over_flushes=1, over_s=0)
        if shedding:
            self.shedder.observe(11, time.monotonic())      # one flush 11 s late: shedding
            assert self.shedder.shedding
        self.node = SimpleNamespace(shedder=self.shedder, hub=SimpleNamespace(stopping=False),
                                    config=Config.load({"PRICEFEED_MAX_PAIRS_PER_REQUEST": 10}, environ={}),
                                    catalog=Catalog())
        self.passed_on: list[bytes] = []
        self.door = StreamDoor(stand_in(Node, self.node), [prefix + "/stream"])

    def handle(self, client) -> None:
        """What AcceptServer does for a connection accepted while the door is closed."""
        if not (self.door.closed() and answered_at_the_door(self.door, client)):
            self._normal_path(None, client, None)
        client.close()

    def _normal_path(self, listener, client, addr) -> None:
        client.settimeout(1)
        self.passed_on.append(client.recv(65536))     # what gunicorn's parser would read: all of it
        client.close()

    def request(self, data: bytes, send_after_s: float = 0.0) -> bytes:
        browser, server = socket.socketpair()
        try:
            if send_after_s:       # accepted before the browser sent its request, as in a batch accept
                threading.Timer(send_after_s, browser.sendall, (data,)).start()
            else:
                browser.sendall(data)
            self.handle(server)
            browser.settimeout(1)
            received = b""
            while chunk := browser.recv(65536):
                received += chunk
            return received
        finally:
            browser.close()
            server.close()


def test_while_shedding_a_stream_request_gets_the_views_503_json_from_the_socket():
    door = Door(shedding=True)
    response = door.request(head())
    status_and_headers, _, body = response.partition(b"\r\n\r\n")
    lines = status_and_headers.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 503 SERVICE UNAVAILABLE"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert headers[b"Content-Type"] == b"application/json"
    assert headers[b"Connection"] == b"close"
    assert headers[b"X-Content-Type-Options"] == b"nosniff" and headers[b"Referrer-Policy"] == b"no-referrer"
    assert 2 <= int(headers[b"Retry-After"]) <= 5
    assert int(headers[b"Content-Length"]) == len(body)
    assert json.loads(body)["error"] == "at_capacity" and "late" in json.loads(body)["detail"]
    assert door.passed_on == []
    assert door.shedder.shed_total == 1 and door.shedder.shed_at_door == 1


def test_a_request_head_arriving_just_after_the_accept_is_still_answered_at_the_door():
    door = Door(shedding=True)
    response = door.request(head(), send_after_s=0.03)
    assert response.startswith(b"HTTP/1.1 503 ") and door.shedder.shed_at_door == 1
    # One that takes longer than HEAD_WAIT_S goes to gunicorn's normal path, which waits for it.
    door.request(head(), send_after_s=0.3)
    assert door.passed_on == [head()] and door.shedder.shed_at_door == 1


def test_a_head_split_across_segments_is_waited_for():
    door = Door(shedding=True)
    data = head()
    browser, server = socket.socketpair()
    try:
        browser.sendall(data[:20])
        threading.Timer(0.03, browser.sendall, (data[20:],)).start()
        door.handle(server)
        browser.settimeout(1)
        assert browser.recv(65536).startswith(b"HTTP/1.1 503 ")
    finally:
        browser.close()
        server.close()
    assert door.shedder.shed_at_door == 1


def test_bytes_after_the_head_or_a_stopping_worker_take_the_normal_path():
    door = Door(shedding=True)
    pipelined = head() + head(b"GET /api/market-data/prices HTTP/1.1")
    door.request(pipelined)
    assert door.passed_on == [pipelined]            # closing with them unread would reset the connection
    door.node.hub.stopping = True
    door.request(head())
    assert door.passed_on[-1] == head()             # the view answers 503 shutting_down, Retry-After: 1
    assert door.shedder.shed_at_door == 0


def test_the_door_passes_everything_else_on_untouched():
    door = Door(shedding=True)
    for data in (head(b"GET /api/market-data/health HTTP/1.1"),
                 head(b"GET /api/market-data/stream HTTP/1.1", b"Origin: https://shop.example"),
                 b"GET /api/market-data/stream HTTP/1.1\r\nHost: exa"):      # head not complete yet
        door.request(data)
        assert door.passed_on[-1] == data          # nothing consumed: gunicorn reads it all
    assert door.shedder.shed_at_door == 0


def test_a_prefix_beyond_ascii_is_matched_as_browsers_send_it():
    door = Door(shedding=True, prefix="/märkte")
    assert door.request(head(b"GET /m%C3%A4rkte/stream?pairs=BTC/USD HTTP/1.1")).startswith(b"HTTP/1.1 503 ")


def test_not_shedding_the_door_is_open():
    door = Door(shedding=False)
    door.request(head())
    assert door.passed_on == [head()] and door.shedder.shed_total == 0


def retry_after(shedder: LoadShedder) -> int:
    """The Retry-After of a refusal by a shedder that is shedding."""
    seconds = shedder.refuse()
    assert seconds is not None
    return seconds


def test_retry_after_spread_follows_the_refused_browsers_still_away():
    now = [0.0]
    shedder = LoadShedder(bound_s=0.1, retry_after_s=2, retry_jitter_s=3, clock=lambda: now[0])
    shedder.shedding = True
    for second in range(5):                        # 1,000 new browsers a second, none back yet
        for k in range(1000):
            now[0] = second + k / 1000
            if k % 50 == 0:
                shedder.observe(0.2, now[0])       # the flusher still runs late
            assert shedder.refuse() is not None
    # Thousands away: the next ones are spread wide enough to come back at ~100 a second.
    assert shedder.retry_spread_s >= 30
    assert max(retry_after(shedder) for _ in range(200)) > 20
    shedder._stop()
    assert shedder.retry_spread_s >= 30            # kept: those browsers are still away
    now[0] += 120                                  # ... until they have all come back
    shedder._start()
    shedder.observe(0.2, now[0])
    assert all(2 <= retry_after(shedder) <= 5 for _ in range(50))
    assert shedder.retry_spread_s == 3


def test_a_fixed_crowd_settles_at_about_the_target_return_rate():
    now = [0.0]
    shedder = LoadShedder(bound_s=0.1, retry_after_s=2, retry_jitter_s=3, clock=lambda: now[0])
    shedder.shedding = True
    returns = sorted((k / 1000, k) for k in range(2000))    # 2,000 browsers, all refused in the first 2 s
    refusals_per_second: dict[int, int] = {}
    while returns and returns[0][0] < 90:
        at, browser = returns.pop(0)
        now[0] = at
        shedder.observe(0.2, at)
        retry_after_s = retry_after(shedder)
        refusals_per_second[int(at)] = refusals_per_second.get(int(at), 0) + 1
        bisect.insort(returns, (at + retry_after_s + (browser % 10) / 10, browser))
    settled = [refusals_per_second.get(second, 0) for second in range(40, 90)]
    assert 50 <= sum(settled) / len(settled) <= 200, settled      # not 2,000 every few seconds


@pytest.mark.parametrize("query, error", [
    (b"pairs=NOPE/USD", "unknown_pair"),
    (b"pairs=BTC/USD&interval=7", "malformed_interval"),
    (b"pairs=BTC/USD&lastEventId=yesterday", "malformed_last_event_id"),
])
def test_while_shedding_a_malformed_stream_request_gets_its_400_not_the_503(query, error):
    door = Door(shedding=True)
    response = door.request(head(b"GET /api/market-data/stream?" + query + b" HTTP/1.1"))
    assert response.startswith(b"HTTP/1.1 400 BAD REQUEST\r\n"), response
    assert json.loads(response.partition(b"\r\n\r\n")[2])["error"] == error
    assert door.shedder.shed_total == 0 and door.passed_on == []
    malformed_header = door.request(head(b"GET /api/market-data/stream?pairs=BTC/USD HTTP/1.1",
                                         b"Last-Event-ID: nope"))
    assert json.loads(malformed_header.partition(b"\r\n\r\n")[2])["error"] == "malformed_last_event_id"


def test_while_shedding_a_kept_alive_requests_refusal_is_the_same_in_the_app():
    door = Door(shedding=True).door
    environ = {"QUERY_STRING": "pairs=BTC/USD&interval=7"}
    refusal = door.refusal(environ)
    assert refusal is not None and refusal.status == 400 and environ["pricefeed.refused"] == "malformed_interval"
    environ = {"QUERY_STRING": "pairs=BTC/USD"}
    refusal = door.refusal(environ)
    assert refusal is not None
    assert (refusal.status, refusal.error, environ["pricefeed.refused"]) == (503, "at_capacity", "at_capacity")
    assert door.refusal({"QUERY_STRING": "pairs=BTC/USD", "HTTP_ORIGIN": "https://shop.example"}) is None
    assert Door(shedding=False).door.refusal({"QUERY_STRING": "pairs=BTC/USD"}) is None
