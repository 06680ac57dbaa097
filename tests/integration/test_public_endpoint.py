"""The public endpoint against the real service: gunicorn with gevent workers, the simulator, Redis.

Clients are raw sockets bound to distinct loopback addresses (127.0.0.2, .3, .4), so the
server sees them as distinct peers, as it would distinct visitors.
"""
from __future__ import annotations

import fcntl
import json
import resource
import socket
import threading
import time
from contextlib import contextmanager

import pytest

from tests.support.gunicorn import GunicornProcess
from tests.support.observe import rss_kib
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

PREFIX = "/api/market-data"
HEAVY_LOCK = "/tmp/pricefeed-bench.lock"


class RawHttp:
    """One HTTP/1.1 request from a chosen source address; reads the head (and more on demand)."""

    def __init__(self, port: int, path: str, source: str = "127.0.0.2", headers: dict | None = None,
                 timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}

    def read_until(self, marker: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        return self.buffer

    def json(self) -> dict:
        body = self.buffer
        length = int(self.headers.get("content-length", "0"))
        while len(body) < length:
            body += self.sock.recv(65536)
        return json.loads(body[:length])

    def close(self) -> None:
        self.sock.close()


@contextmanager
def heavy_run(wait_s: float = 480):
    """Serialised with every other heavy run on this machine (the house rule for >1000 connections);
    fails, loudly, if another run holds the lock longer than `wait_s`."""
    with open(HEAVY_LOCK, "a") as lock:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{HEAVY_LOCK} stayed held by another heavy run for {wait_s:.0f}s")
                time.sleep(0.5)    # polling a lock someone else holds: nothing to wait on but time
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def exchange():
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=20) as sim:
        yield sim


def service(exchange, **env) -> GunicornProcess:
    return GunicornProcess(workers=1, env={"PRICEFEED_UPSTREAM_URL": exchange.ws_url,
                                           "PRICEFEED_PAIRS": "BTC/USD,ETH/USD", **env})


def test_a_megabyte_request_line_is_refused_at_once_while_another_stream_keeps_its_pace(exchange):
    with service(exchange) as app:
        watcher = SSEClient(app.url + PREFIX + "/stream?pairs=BTC/USD,ETH/USD")
        try:
            watcher.wait_for(lambda c: len(c.of("price")) >= 5, 20, "prices on the watching stream")
            attacker = socket.create_connection(("127.0.0.1", app.port), timeout=5, source_address=("127.0.0.2", 0))
            line = b"GET " + PREFIX.encode() + b"/prices?pairs=" + b"A" * 1_000_000 + b" HTTP/1.1\r\n\r\n"
            started = time.monotonic()
            sender = threading.Thread(target=lambda: _send_ignoring_reset(attacker, line), daemon=True)
            sender.start()
            answer = b""
            while b"}" not in answer:
                chunk = attacker.recv(4096)
                if not chunk:
                    break
                answer += chunk
            refused_after = time.monotonic() - started
            attacker.close()
            sender.join(5)
            attack_window = (time.time() - refused_after, time.time() + 1.0)
            # gunicorn's bound refuses it before the app sees it, with our JSON reason.
            assert answer.startswith(b"HTTP/1.1 414"), answer[:200]
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "query_too_long"
            assert refused_after < 0.5, f"the 1 MB request line took {refused_after:.3f}s to refuse"
            # The other client's prices kept arriving as fast as before, during and after the attack.
            watcher.wait_for(lambda c: c.of("price")[-1].received_at > attack_window[1], 10,
                             "a second of prices after the attack")
            during = [e for e in watcher.of("price") if attack_window[0] <= e.received_at <= attack_window[1]]
            late = [e.received_at - e.json()["ts"] / 1000 for e in during]
            assert during and max(late) < 0.5, f"{len(during)} prices during the attack, worst {max(late):.3f}s late"
        finally:
            watcher.close()


def test_oversized_headers_are_refused_by_gunicorn_with_a_json_reason(exchange):
    with service(exchange) as app:
        for extra in ("X-Big: " + "b" * 10_000, "\r\n".join(f"X-{n}: {n}" for n in range(150))):
            sock = socket.create_connection(("127.0.0.1", app.port), timeout=5, source_address=("127.0.0.2", 0))
            sock.sendall(f"GET {PREFIX}/prices HTTP/1.1\r\nHost: x\r\n{extra}\r\n\r\n".encode())
            answer = b""
            while b"}" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
            sock.close()
            assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "headers_too_large"


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass          # the server closed on us mid-line: that is the point


@pytest.mark.timeout(600)
def test_one_address_with_2000_streams_hits_its_cap_while_others_and_health_are_served(exchange):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 5000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    with heavy_run(), service(exchange) as app:
        [worker] = app.worker_pids()
        for _ in range(20):       # warm up: the code paths of a stream and of a refusal are loaded
            RawHttp(app.port, PREFIX + "/prices", source="127.0.0.5").close()
        probe = RawHttp(app.port, PREFIX + "/stream?pairs=BTC/USD", source="127.0.0.5")
        probe.read_until(b"event: snapshot")
        probe.close()
        wait_until(lambda: app.health()["clients"]["clients"] == 0, 10, message="the probe stream to close")
        baseline = rss_kib(worker)
        limit = app.health()["clients"]["admission"]["max_streams_per_address"]

        held, refused = [], []
        try:
            for _ in range(2000):
                client = RawHttp(app.port, PREFIX + "/stream?pairs=BTC/USD", source="127.0.0.2")
                if client.status == 200:
                    held.append(client)       # idle from now on: never read again
                else:
                    refused.append((client.status, client.headers.get("retry-after"), client.json()["error"]))
                    client.close()
            assert len(held) == limit
            assert len(refused) == 2000 - limit
            assert {status for status, _, _ in refused} == {429}
            assert {error for _, _, error in refused} == {"too_many_streams"}
            assert all(retry_after is not None and int(retry_after) > 0 for _, retry_after, _ in refused)

            # Another address still gets a stream, with its snapshot, and /health answers at once.
            other = RawHttp(app.port, PREFIX + "/stream?pairs=BTC/USD", source="127.0.0.3")
            assert other.status == 200
            assert b"event: snapshot" in other.read_until(b"event: snapshot")
            other.close()
            started = time.monotonic()
            health = app.health()
            assert time.monotonic() - started < 0.5
            assert health["clients"]["clients"] >= limit
            peak = rss_kib(worker)
        finally:
            for client in held:
                client.close()
        wait_until(lambda: app.health()["clients"]["clients"] == 0, 20, message="every held stream to close")
        after = wait_until(lambda: (lambda rss: rss if rss - baseline < 8 * 1024 else None)(rss_kib(worker)), 20,
                           message="the worker's memory back near its baseline")
        print(f"worker RSS KiB: baseline {baseline}, with {limit} streams held and {len(refused)} refused "
              f"{peak}, after {after}")
        assert app.health()["clients"]["admission"]["addresses"] == 0


def test_a_worker_full_of_streams_keeps_connections_for_health_and_prices(exchange):
    # A pool of 50 connections, 10 kept in reserve: the 41st stream is told to come back later,
    # and /health and /prices still answer at once instead of waiting in the kernel's backlog.
    with service(exchange, PRICEFEED_WORKER_CONNECTIONS="50", PRICEFEED_CONNECTION_RESERVE="10",
                 PRICEFEED_MAX_CLIENTS="900", PRICEFEED_MAX_STREAMS_PER_IP="1000") as app:
        held = []
        try:
            for _ in range(40):
                held.append(RawHttp(app.port, PREFIX + "/stream?pairs=BTC/USD", source="127.0.0.2"))
            assert {c.status for c in held} == {200}
            one_too_many = RawHttp(app.port, PREFIX + "/stream?pairs=BTC/USD", source="127.0.0.3")
            held.append(one_too_many)
            assert one_too_many.status == 503 and one_too_many.json()["error"] == "at_capacity"
            for path in ("/health", "/prices"):
                started = time.monotonic()
                assert app.get(PREFIX + path, timeout=2)[0] == 200
                assert time.monotonic() - started < 0.5
            assert app.health()["clients"]["max_clients"] == 40
            assert "streams capped at 40 per worker" in app.output()
        finally:
            for client in held:
                client.close()


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(exchange):
    with service(exchange, PRICEFEED_MAX_STREAMS_PER_IP="2", PRICEFEED_TRUSTED_PROXIES="127.0.0.4") as app:
        held = []
        try:
            # A direct client naming a new address each time is still one address.
            spoofed = [RawHttp(app.port, PREFIX + "/stream?pairs=BTC/USD", source="127.0.0.2",
                               headers={"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(3)]
            held += spoofed
            assert [c.status for c in spoofed] == [200, 200, 429]
            # Through the trusted proxy, the hop it appended is the client: three visitors, three streams.
            proxied = [RawHttp(app.port, PREFIX + "/stream?pairs=BTC/USD", source="127.0.0.4",
                               headers={"X-Forwarded-For": f"6.6.6.6, 203.0.113.{n}"}) for n in range(3)]
            held += proxied
            assert [c.status for c in proxied] == [200, 200, 200]
            # The proxy itself is loopback, but its visitors must not get the operator's view.
            via_proxy = RawHttp(app.port, PREFIX + "/health", source="127.0.0.4",
                                headers={"X-Forwarded-For": "127.0.0.1"})
            assert set(via_proxy.json()) == {"status", "mode", "reason", "pairs"}
            spoofing_loopback = RawHttp(app.port, PREFIX + "/health", source="127.0.0.2",
                                        headers={"X-Forwarded-For": "127.0.0.1"})
            assert set(spoofing_loopback.json()) == {"status", "mode", "reason", "pairs"}
            held += [via_proxy, spoofing_loopback]
        finally:
            for client in held:
                client.close()


def test_the_detailed_health_needs_the_token_and_no_secret_or_host_reaches_anyone():
    password, token = "s3cret-redis-pw", "0ps-t0ken"
    hostname = socket.gethostname()
    with RedisServer() as redis_server, SimulatorProcess(pairs="BTCUSDT", rate=20) as sim:
        redis_server.client.config_set("requirepass", password)
        url = f"redis://:{password}@127.0.0.1:{redis_server.port}/0?password={password}"
        with GunicornProcess(workers=2, env={"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_PAIRS": "BTC/USD",
                                             "PRICEFEED_REDIS_URL": url, "PRICEFEED_ADMIN_TOKEN": token}) as app:
            public = app.get_json(PREFIX + "/health")[1]
            assert set(public) == {"status", "mode", "reason", "pairs"}
            wrong = app.get_json(PREFIX + "/health", headers={"Authorization": "Bearer nope"})[1]
            assert set(wrong) == {"status", "mode", "reason", "pairs"}
            detailed = wait_until(lambda: (lambda h: h if h["mode"] == "live" else None)(
                app.get_json(PREFIX + "/health", headers={"Authorization": f"Bearer {token}"})[1]), 20,
                message="the deployment to go live through the password-protected Redis")
            assert detailed["redis"]["reachable"] is True
            assert detailed["config"]["redis_url"] == f"redis://127.0.0.1:{redis_server.port}/0"
            stream = SSEClient(app.url + PREFIX + "/stream?pairs=BTC/USD")
            try:
                stream.wait_for(lambda c: c.of("snapshot") and c.of("price"), 15, "a snapshot and a price")
                browser_bytes = b"".join(e.raw for e in stream.events)
            finally:
                stream.close()
            _, prices = app.get(PREFIX + "/prices")
            for seen in (browser_bytes, prices, json.dumps(public).encode()):
                assert hostname.encode() not in seen
                for pid in app.worker_pids():
                    assert f":{pid}".encode() not in seen
            everything = json.dumps(detailed) + app.output() + browser_bytes.decode() + prices.decode()
            assert password not in everything and token not in everything
        # A setting that fails to parse names itself, and not the password inside it.
        broken = GunicornProcess(workers=1, wait_ready=False,
                                 env={"PRICEFEED_REDIS_URL": f"http://:{password}@127.0.0.1:1/0"})
        try:
            wait_until(lambda: broken.proc.poll() is not None, 30, message="gunicorn to refuse the setting")
            output = broken.output()
            assert "PRICEFEED_REDIS_URL" in output and password not in output
        finally:
            broken.stop()


def test_a_stream_past_its_lifetime_ends_and_the_browser_resumes_without_a_gap(exchange):
    with service(exchange, PRICEFEED_MAX_STREAM_LIFETIME="1") as app:
        first = SSEClient(app.url + PREFIX + "/stream?pairs=BTC/USD,ETH/USD")
        try:
            first.wait_for(lambda c: c.closed, 10, "the stream to end after its lifetime")
            last_id = [e.id for e in first.events if e.id][-1]
        finally:
            first.close()
        again = SSEClient(app.url + PREFIX + "/stream?pairs=BTC/USD,ETH/USD", headers={"Last-Event-ID": last_id})
        try:
            again.wait_for(lambda c: c.of("snapshot"), 10, "the resumed snapshot")
            assert again.of("snapshot")[0].json()["resume"]["gap"] is False
        finally:
            again.close()


def test_a_client_that_leaves_while_waiting_for_admission_gives_its_slot_back(exchange):
    with service(exchange, PRICEFEED_NEW_STREAMS_PER_SECOND="1", PRICEFEED_NEW_STREAMS_BURST="1",
                 PRICEFEED_NEW_STREAMS_SHARE_PER_IP="1") as app:
        admitted = SSEClient(app.url + PREFIX + "/stream?pairs=BTC/USD")
        try:
            impatient = socket.create_connection(("127.0.0.1", app.port), timeout=5)
            impatient.sendall(f"GET {PREFIX}/stream?pairs=BTC/USD HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            wait_until(lambda: app.health()["clients"]["admission"]["delayed"] >= 1, 5,
                       message="the second stream to wait for its turn")
            impatient.close()
            admission = wait_until(lambda: (lambda a: a if a["cancelled"] == 1 else None)(
                app.health()["clients"]["admission"]), 5, message="the slot to be given back")
            assert admission["admitted"] == 1 and app.health()["clients"]["clients"] == 1
        finally:
            admitted.close()
