"""A clean stream GET handed from the worker's accept path straight to the stream session
(pricefeed/server/handoff.py, pricefeed/web/streams/handoff.py), against a real gunicorn:
the bytes a browser reads, the public endpoint's answers in JSON over the same path, and
the requests that must still take gunicorn's own (with an access log configured, every one).

Which path a stream came by is seen in the parked stream's stack (test_worker.py).
"""
from __future__ import annotations

import json
import socket
import time

import pytest

from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.waiting import wait_until

PAIRS = "BTC/USD,ETH/USD"
STREAM = f"/api/market-data/stream?pairs={PAIRS}"
ALLOWED = "http://allowed.example"


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=20) as simulator:
        yield simulator


def env_for(sim, **extra: str) -> dict:
    return {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url, "PRICEFEED_PAIRS": PAIRS,
            "PRICEFEED_ALLOWED_ORIGINS": ALLOWED, **extra}


@pytest.fixture(scope="module")
def server(sim):
    with GunicornProcess(workers=1, env=env_for(sim)) as app:
        wait_until(lambda: app.health()["mode"] == "live", 20, message="live mode")
        yield app


def raw_get(port: int, target: str, headers: str = "", until: bytes | None = None, timeout: float = 10) -> bytes:
    """Send one request head as a browser would; read until `until` arrives, or the connection closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
                     f"{headers}\r\n".encode("latin-1"))
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (until is None or until not in data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def head_and_body(data: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


def test_a_handed_off_stream_sends_its_head_snapshot_and_prices(server):
    data = raw_get(server.port, STREAM, until=b"event: price")
    status, headers, body = head_and_body(data)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["transfer-encoding"] == "chunked" and headers["connection"] == "close"
    assert headers["vary"] == "Origin" and headers["x-content-type-options"] == "nosniff"
    assert "referrer-policy" in headers and "date" in headers
    assert b"retry: " in body and b"event: snapshot" in body and b"event: price" in body


def test_an_allowed_cross_site_page_gets_its_cors_headers(server):
    status, headers, _ = head_and_body(raw_get(server.port, STREAM, f"Origin: {ALLOWED}\r\n", until=b"event: snapshot"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["access-control-allow-origin"] == ALLOWED and headers["vary"] == "Origin"


@pytest.mark.parametrize("target, extra, code, error", [
    ("/api/market-data/stream?pairs=NOPE/USD", "", 400, "unknown_pair"),
    ("/api/market-data/stream?pairs=BTC/USD&interval=7", "", 400, "malformed_interval"),
    (STREAM, "Last-Event-ID: yesterday\r\n", 400, "malformed_last_event_id"),
    (STREAM, "Origin: http://elsewhere.example\r\n", 403, "origin_not_allowed"),
])
def test_refusals_over_the_hand_off_are_json_and_close_the_connection(server, target, extra, code, error):
    status, headers, body = head_and_body(raw_get(server.port, target, extra))     # read to the close
    assert status.startswith(f"HTTP/1.1 {code} ")
    assert headers["content-type"] == "application/json" and headers["vary"] == "Origin"
    assert headers["connection"] == "close"
    assert len(body) == int(headers["content-length"])
    assert json.loads(body)["error"] == error


def test_requests_the_hand_off_does_not_take_are_gunicorns(server):
    # A HEAD, an HTTP/1.0 GET and a GET with a body are answered by gunicorn and Flask as before.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(f"HEAD {STREAM} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, _ = head_and_body(sock.recv(65536))
        assert status == "HTTP/1.1 200 OK" and headers["content-length"] == "0"
        assert headers["server"].startswith("gunicorn")      # gunicorn wrote it (the hand-off writes no Server)
    finally:
        sock.close()
    for extra in ("Content-Length: 0\r\n", "X_Mapped_By_Gunicorn: 1\r\n"):
        status, headers, body = head_and_body(raw_get(server.port, STREAM, extra, until=b"event: snapshot"))
        assert status == "HTTP/1.1 200 OK" and b"event: snapshot" in body     # (which path: test_worker.py)


def test_with_an_access_log_every_stream_is_logged_by_gunicorn(sim, tmp_path):
    log = tmp_path / "access.log"
    with GunicornProcess(workers=1, env=env_for(sim, PRICEFEED_ACCESS_LOG=str(log))) as app:
        wait_until(lambda: app.health()["mode"] == "live", 20, message="live mode")
        data = raw_get(app.port, STREAM, until=b"event: snapshot")
        assert data.startswith(b"HTTP/1.1 200 OK")
        wait_until(lambda: log.exists() and "/api/market-data/stream" in log.read_text(), 10,
                   message="the stream in gunicorn's access log")
