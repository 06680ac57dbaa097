"""How stream bytes reach clients under gunicorn: direct chunked writes, the WSGI path for
HTTP/1.0, the conflated pace, and the admission gate. Simulator → gunicorn (2 gevent workers).

Asserts the bytes on the wire, read from raw sockets: chunk framing, events, and rates.
"""
from __future__ import annotations

import itertools
import json
import re
import socket
import time

import pytest

from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

PAIRS = "BTC/USD,ETH/USD"
SYMBOLS = "BTCUSDT,ETHUSDT"
STREAM = "/api/market-data/stream"
PRICE_EVENT = re.compile(rb'id: [0-9]+-[0-9]+\nevent: price\ndata: \{"pair":"([^"]+)","symbol":"[^"]+",'
                         rb'"price":"([^"]+)"[^\n]*\}\n\n')


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=40) as simulator:
        yield simulator


def serve(sim, workers: int = 2, **settings: str) -> GunicornProcess:
    env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": PAIRS, "PRICEFEED_HEARTBEAT_INTERVAL": "2",
           **{f"PRICEFEED_{key.upper()}": value for key, value in settings.items()}}
    return GunicornProcess(workers=workers, env=env)


class RawStream:
    """A stream read from a raw socket: the exact bytes gunicorn and the flusher put on the wire."""

    def __init__(self, port: int, path: str, version: str = "HTTP/1.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(f"GET {path} {version}\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self.raw = b""
        while b"\r\n\r\n" not in self.raw:
            self.raw += self._recv()
        self.head, _, self.raw = self.raw.partition(b"\r\n\r\n")

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the stream")
        return data

    def read_until(self, condition, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out waiting for the stream"
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            self.raw += self._recv()

    def dechunked(self) -> tuple[list[bytes], bytes]:
        """The complete chunks so far, and the rest; fails on any framing error."""
        chunks, rest = [], self.raw
        while rest:
            size_line, sep, after = rest.partition(b"\r\n")
            if not sep:
                break
            assert re.fullmatch(rb"[0-9A-F]+", size_line), f"bad chunk size line {size_line[:40]!r}"
            size = int(size_line, 16)
            if len(after) < size + 2:
                break
            assert after[size:size + 2] == b"\r\n", "a chunk does not end with CRLF"
            chunks.append(after[:size])
            rest = after[size + 2:]
        return chunks, rest

    def close(self) -> None:
        self.sock.close()


def test_under_gunicorn_the_flusher_writes_well_formed_chunks_straight_to_the_socket(sim):
    sim.market(paused=False)
    with serve(sim) as server:
        wait_until(lambda: server.health()["mode"] == "live", 20, message="live mode")
        streams = [RawStream(server.port, f"{STREAM}?pairs={PAIRS}") for _ in range(6)]
        try:
            for stream in streams:
                assert stream.head.startswith(b"HTTP/1.1 200")
                assert b"transfer-encoding: chunked" in stream.head.lower()
                stream.read_until(lambda s=stream: len(PRICE_EVENT.findall(b"".join(s.dechunked()[0]))) >= 20)
                chunks, _ = stream.dechunked()
                body = b"".join(chunks)
                assert body.startswith(b"retry: ")
                # Every chunk is whole events: the flusher never splits one across writes.
                for chunk in chunks[1:]:
                    assert chunk.endswith(b"\n\n") and (chunk.startswith(b"id: ") or chunk.startswith(b": ")
                                                        or chunk.startswith(b"event: status"))
            # Both workers report their streams as written directly (no WSGI round trip).
            seen = {}
            wait_until(lambda: seen.update({h["worker"]["id"]: h["clients"] for h in [server.health()]})
                       or sum(c["clients_direct"] for c in seen.values()) == 6 and len(seen) == 2,
                       20, message="both workers' health, 6 direct streams")
            assert all(c["direct_writes"] for c in seen.values())
        finally:
            for stream in streams:
                stream.close()


def test_an_http_1_0_client_gets_the_same_events_unchunked_through_wsgi(sim):
    sim.market(paused=False)
    with serve(sim) as server:
        wait_until(lambda: server.health()["mode"] == "live", 20, message="live mode")
        stream = RawStream(server.port, f"{STREAM}?pairs={PAIRS}", version="HTTP/1.0")
        try:
            assert stream.head.startswith(b"HTTP/1.0 200") or stream.head.startswith(b"HTTP/1.1 200")
            assert b"transfer-encoding" not in stream.head.lower()
            stream.read_until(lambda: len(PRICE_EVENT.findall(stream.raw)) >= 10)
            assert stream.raw.startswith(b"retry: ")
            assert not re.search(rb"(^|\n)[0-9A-F]+\r\n", stream.raw), "chunk framing leaked into a 1.0 body"
        finally:
            stream.close()


def test_with_a_minimum_update_interval_each_client_gets_at_most_one_price_per_pair_per_interval(sim):
    sim.market(paused=False)
    with serve(sim, min_update_interval="0.5") as server:
        wait_until(lambda: server.health()["mode"] == "live", 20, message="live mode")
        client = SSEClient(f"{server.url}{STREAM}?pairs={PAIRS}")
        try:
            wait_until(lambda: sum(e.name == "price" for e in client.events) >= 12, 20, message="12 prices")
            prices = [e for e in client.events if e.name == "price"]
            for pair in PAIRS.split(","):
                times = [e.received_at for e in prices if e.json()["pair"] == pair]
                gaps = [b - a for a, b in itertools.pairwise(times)]
                # 40 trades/s upstream, ~20 per pair; conflated to one per 0.5 s (0.05 s slot jitter).
                assert gaps and min(gaps) >= 0.4, gaps
            # ... and the last price of each pair is the exchange's, once the market pauses.
            sim.market(paused=True)
            final = {symbol: quote["price"] for symbol, quote in sim.prices().items()}
            wait_until(lambda: all(
                [e.json()["price"] for e in client.events if e.name == "price" and e.json()["symbol"] == symbol][-1:]
                == [final[symbol]] for symbol in SYMBOLS.split(",")), 10, message="final prices")
        finally:
            client.close()
            sim.market(paused=False)


def test_new_streams_past_the_admission_rate_wait_and_past_the_longest_wait_get_a_json_503(sim):
    sim.market(paused=False)
    with serve(sim, workers=1, new_streams_per_second="1", new_streams_burst="1",
               new_stream_max_wait="1.5") as server:
        wait_until(lambda: server.health()["mode"] == "live", 20, message="live mode")
        path = f"{STREAM}?pairs={PAIRS}"
        first = RawStream(server.port, path)                   # the burst: admitted at once
        assert first.head.startswith(b"HTTP/1.1 200")
        # Five more at once: one slot per second, and nobody waits longer than 1.5 s.
        socks = []
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(sock)
        started = time.monotonic()
        heads = []
        try:
            for sock in socks:
                raw = b""
                while b"\r\n\r\n" not in raw:
                    raw += sock.recv(65536)
                at = time.monotonic() - started
                length = re.search(rb"content-length: ([0-9]+)", raw.lower())
                while length and len(raw.partition(b"\r\n\r\n")[2]) < int(length.group(1)):
                    raw += sock.recv(65536)
                heads.append((at, raw))
            admitted = [at for at, raw in heads if raw.startswith(b"HTTP/1.1 200")]
            refused = [raw for at, raw in heads if raw.startswith(b"HTTP/1.1 503")]
            assert len(admitted) == 1 and 0.6 <= admitted[0] <= 2.5, heads
            assert len(refused) == 4
            for raw in refused:
                head, _, body = raw.partition(b"\r\n\r\n")
                assert b"retry-after: " in head.lower()
                assert json.loads(body)["error"] == "at_capacity"
            admission = server.health()["clients"]["admission"]
            assert admission["refused"] == 4 and admission["delayed"] == 1
        finally:
            first.close()
            for sock in socks:
                sock.close()


def test_when_the_apps_middleware_rewrites_the_body_every_chunk_goes_through_it(sim):
    from tests.support.middleware_app import TAG
    sim.market(paused=False)
    env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": PAIRS}
    with GunicornProcess(workers=1, env=env, app="tests.support.middleware_app:app") as server:
        wait_until(lambda: server.health()["mode"] == "live", 20, message="live mode")
        stream = RawStream(server.port, f"{STREAM}?pairs={PAIRS}")
        try:
            stream.read_until(lambda: len(PRICE_EVENT.findall(b"".join(stream.dechunked()[0]))) >= 10)
            chunks, _ = stream.dechunked()
            assert all(chunk.endswith(TAG) for chunk in chunks), "a chunk bypassed the app's middleware"
            clients = server.health()["clients"]
            assert clients["clients"] == 1 and clients["clients_direct"] == 0
        finally:
            stream.close()
