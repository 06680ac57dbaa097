"""Overload and restarts under real gunicorn, a real Redis and the simulator.

- Shedding on lag: a deliberately slowed flusher (PRICEFEED_FAULT_INJECTION's slow-flush)
  pushes both workers past their lag bound; new streams are refused fast with
  `503 at_capacity` and a Retry-After while the open ones keep receiving prices, and
  admission resumes once the flusher is back on time.
- A graceful restart (SIGHUP to the master) with dozens of streams: the closes are spread
  over time, each stream gets a `retry:` before it closes, and every client reconnects
  (after that delay, as a browser would) to a new worker and gets prices again.
The long versions (7,000 trader clients, 20,000 widget streams) are bench/overload.py and
bench/restart.py.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time

import pytest

from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

STREAM = f"/api/market-data/stream?pairs={PAIRS}"


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=20) as simulator:
        yield simulator


def set_flush_delay_on_every_worker(app: GunicornProcess, ms: int, workers: int = 2) -> None:
    """Requests land on any worker: ask until each has answered."""
    seen: set[str] = set()

    def all_set():
        status, body = app.get(f"/api/market-data/_fault/slow-flush?ms={ms}", method="POST")
        assert status == 200, body
        seen.add(json.loads(body)["worker"])
        return len(seen) >= workers
    wait_until(all_set, 10, interval=0.01, message=f"slow-flush={ms} on every worker")


def health_of_every_worker(app: GunicornProcess, workers: int = 2) -> dict[str, dict]:
    """Each worker's detailed /health (requests land on any worker: ask until each answered)."""
    healths: dict[str, dict] = {}

    def all_seen():
        health = app.health()
        healths[health["worker"]["id"]] = health
        return len(healths) >= workers
    wait_until(all_seen, 10, interval=0.01, message="/health from every worker")
    return healths


def loads_of_every_worker(app: GunicornProcess, workers: int = 2) -> dict[str, dict]:
    """Each worker's `clients.load` from /health."""
    return {worker: health["clients"]["load"] for worker, health in health_of_every_worker(app, workers).items()}


def streams_on_every_worker(app: GunicornProcess, per_worker: int, workers: int = 2) -> list[SSEClient]:
    """Open streams until each worker holds at least `per_worker` of them.

    The kernel hands connections to whichever worker accepts first, so a few streams can all
    land on one worker; a worker with no streams has nothing to flush, no lag, and rightly
    admits. A test about every worker shedding needs streams on every worker."""
    opened: list[SSEClient] = []

    def spread():
        opened.append(SSEClient(app.url + STREAM))
        opened[-1].wait_for(lambda c: c.of("price"), 10, "prices")
        healths = health_of_every_worker(app, workers).values()
        return min(health["clients"]["clients"] for health in healths) >= per_worker
    try:
        wait_until(spread, 30, interval=0, message=f"{per_worker} streams on each of {workers} workers")
    except BaseException:
        for client in opened:
            client.close()
        raise
    return opened


def metric(app: GunicornProcess, name: str) -> float:
    """The sum of a series' samples in /metrics (without labels)."""
    status, body = app.get("/api/market-data/metrics")
    assert status == 200, body
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def open_stream(app: GunicornProcess) -> tuple[SSEClient, float]:
    started = time.monotonic()
    client = SSEClient(app.url + STREAM, timeout=10)
    return client, time.monotonic() - started


def test_a_worker_behind_its_lag_bound_refuses_new_streams_fast_keeps_its_clients_and_recovers(redis_server, sim):
    env = instance_env(sim, redis_server.url, new_prefix(), PRICEFEED_FAULT_INJECTION="true",
                       PRICEFEED_LAG_BOUND="0.1", PRICEFEED_SHED_AFTER_FLUSHES="2",
                       PRICEFEED_SHED_AFTER_SECONDS="0.5")
    with GunicornProcess(workers=2, env=env) as app:
        all_live([app])
        connected = streams_on_every_worker(app, per_worker=3)
        try:
            set_flush_delay_on_every_worker(app, 400)
            # Each worker turns to shedding on its own flushes' lag (hysteresis: a few late flushes
            # over SHED_AFTER_SECONDS); once both say so, every new stream is refused, on either.
            wait_until(lambda: all(load["shedding"] for load in loads_of_every_worker(app).values()), 15,
                       interval=0.05, message="both workers shedding")
            refusals = [open_stream(app) for _ in range(6)]
            assert [client.status for client, _ in refusals] == [503] * 6
            for refused, took in refusals:
                assert took < 0.5, f"a refusal took {took:.3f} s"
                assert json.loads(refused.body)["error"] == "at_capacity"
                assert "late" in json.loads(refused.body)["detail"]
                assert refused.headers["content-type"] == "application/json"
                assert 2 <= int(refused.headers["retry-after"]) <= 5
            # Answered at the door (pricefeed/server/accept.py), before gunicorn's parser and Flask ...
            loads = loads_of_every_worker(app)
            assert sum(load["shed_at_door"] for load in loads.values()) >= 1, loads
            # ... but a request the door does not take (with an Origin header, whose answer may need
            # CORS headers) still gets the stream session's 503.
            with_origin = SSEClient(app.url + STREAM, headers={"Origin": app.url}, timeout=10)
            assert with_origin.status == 503, loads_of_every_worker(app)
            assert json.loads(with_origin.body)["error"] == "at_capacity"
            assert with_origin.headers["content-type"] == "application/json"
            with_origin.close()
            # Operators see it in /metrics too.
            wait_until(lambda: metric(app, "pricefeed_shedding") >= 1 and metric(app, "pricefeed_flush_lag_seconds") > 0.1,
                       10, interval=0.2, message="shedding and the lag in /metrics")
            # The connected ones keep receiving while new ones are turned away.
            counts = [len(c.of("price")) for c in connected]
            for client, before in zip(connected, counts, strict=True):
                client.wait_for(lambda c, before=before: len(c.of("price")) >= before + 5, 10, "more prices")
            assert all(not c.closed for c in connected)
            health = app.health()["clients"]["load"]
            assert health["lag_bound_ms"] == 100.0 and health["lag_max_ms"] > 100

            set_flush_delay_on_every_worker(app, 0)
            admitted: list[SSEClient] = []

            def admitted_again():
                client, _ = open_stream(app)
                if client.status == 200:
                    admitted.append(client)
                else:
                    client.close()
                return len(admitted) >= 4     # on both workers, in all likelihood
            wait_until(admitted_again, 15, interval=0.1, message="admission to resume")
            for client in admitted:
                client.wait_for(lambda c: c.of("price"), 10, "prices on a stream admitted after the lag fell")
                client.close()
            load = app.health()["clients"]["load"]
            assert load["shedding"] is False and load["shed_total"] >= 1 and load["shed_episodes"] >= 1
        finally:
            for client in connected:
                client.close()


def test_a_graceful_restart_spreads_the_closes_sends_retry_and_every_client_comes_back(redis_server, sim):
    spread_s = 2.0
    env = instance_env(sim, redis_server.url, new_prefix(), PRICEFEED_RESTART_SPREAD=str(spread_s),
                       PRICEFEED_RESTART_CLOSES_PER_SECOND="15",     # ~24 streams a worker: most of the window
                       PRICEFEED_RESTART_RETRY_MS="200", PRICEFEED_RESTART_RETRY_JITTER_MS="800")
    with GunicornProcess(workers=2, env=env) as app:
        all_live([app])
        old_workers = set(app.worker_pids())
        clients = [SSEClient(app.url + STREAM) for _ in range(48)]
        closed_at: dict[int, float] = {}
        try:
            for client in clients:
                client.wait_for(lambda c: c.of("price"), 10, "prices")
            stop_watching = threading.Event()

            def watch():
                while not stop_watching.is_set():
                    for index, client in enumerate(clients):
                        if index not in closed_at and client.closed:
                            closed_at[index] = time.monotonic()
                    time.sleep(0.01)
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            hup_at = time.monotonic()
            app.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: len(closed_at) == len(clients), 10, message="every stream closed by the restart")
            stop_watching.set()
            watcher.join(2)
            times = sorted(t - hup_at for t in closed_at.values())
            assert times[-1] - times[0] >= spread_s * 0.5, f"closes span only {times[-1] - times[0]:.2f} s"
            assert times[-1] < 8, "the spread must end inside graceful_timeout (10 s)"
            # Each got a retry: (after the preamble's own) before its stream ended.
            farewells = []
            for client in clients:
                retries = [e.retry for e in client.events if e.retry is not None]
                assert len(retries) == 2, retries
                farewells.append(retries[-1])
                assert 200 <= retries[-1] <= 1000
                assert client.error is None
            assert len(set(farewells)) > 10                  # jittered per stream
            # Every client comes back after its retry delay, to a new worker, and gets prices.
            for client in clients:
                client.close()
            returned = []
            # Reconnect each after its own delay, as EventSource does.
            deadline = time.monotonic() + 20
            pending = list(zip(range(len(clients)), farewells, strict=False))
            while pending:
                assert time.monotonic() < deadline, f"{len(pending)} clients never came back"
                index, delay_ms = pending.pop(0)
                wait = closed_at[index] + delay_ms / 1000 - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                client = SSEClient(app.url + STREAM, timeout=10)
                if client.status != 200:
                    # Shed or still restarting: Retry-After, as the browser client does.
                    client.close()
                    pending.append((index, 1000 * int(client.headers.get("retry-after", "1"))))
                    closed_at[index] = time.monotonic()
                    continue
                returned.append(client)
            for client in returned:
                snapshot = client.wait_for(lambda c: c.of("snapshot"), 10, "a snapshot")[0].json()
                assert int(snapshot["worker"].rsplit(":", 1)[1]) not in old_workers
                client.wait_for(lambda c: c.of("price"), 10, "live prices after the restart")
            assert len(returned) == len(clients)
            assert "SIGKILL" not in app.output() and "graceful timeout" not in app.output().lower()
            closed = re.findall(r"handed over in [0-9.]+ s, kept streaming [0-9.]+ s, then closed ([0-9]+) streams over",
                                app.output())
            assert sorted(closed) != [] and sum(map(int, closed)) == len(clients), closed
            for client in returned:
                client.close()
        finally:
            for client in clients:
                client.close()


def test_a_stopping_worker_closes_its_idle_keepalive_connections_so_the_next_request_reaches_a_new_one(redis_server, sim):
    """A browser that reuses a kept-alive connection after a restart would otherwise be told
    `503 shutting_down` by the old worker until the connection's keepalive (5 s) ran out."""
    env = instance_env(sim, redis_server.url, new_prefix(), PRICEFEED_RESTART_SPREAD="0.5")
    with GunicornProcess(workers=2, env=env) as app:
        all_live([app])
        old_workers = set(app.worker_pids())
        idle = []
        for _ in range(6):       # on both workers, in all likelihood; each served one request and waits
            sock = socket.create_connection(("127.0.0.1", app.port))
            sock.sendall(f"GET /api/market-data/prices?pairs={PAIRS} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = read_response(sock)
            assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
            idle.append(sock)
        # One that has not sent its first request yet is not idle between requests: left open.
        fresh = socket.create_connection(("127.0.0.1", app.port))
        stream = SSEClient(app.url + STREAM)
        try:
            stream.wait_for(lambda c: c.of("price"), 10, "prices")
            app.proc.send_signal(signal.SIGHUP)
            for sock in idle:
                # The server ends the idle connection itself, long before its 5 s keepalive ...
                sock.settimeout(3)
                assert sock.recv(1) == b"", "an idle keep-alive connection left open by a stopping worker"
            # ... while the stream is still served until the spread closes it (with its retry:).
            stream.wait_for(lambda c: c.closed, 10, "the stream closed by the restart")
            assert [e.retry for e in stream.events if e.retry is not None][-1] >= 1000
            # The next request, on a new connection, is answered by a new worker.
            health = wait_until(app.health, 10, message="health")
            assert int(health["worker"]["id"].rsplit(":", 1)[1]) not in old_workers
            swept = re.findall(r"stopping: 1 listener\(s\) closed, ([0-9]+) idle keep-alive connection\(s\) closed",
                               app.output())
            assert len(swept) == 2 and sum(map(int, swept)) == len(idle), swept
            # The connection that never sent a request was not cut short: it is still answered
            # (by the old worker: it accepted it, and answers it before it exits).
            fresh.sendall(f"GET /api/market-data/prices?pairs={PAIRS} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            fresh.settimeout(5)
            assert read_response(fresh).startswith(b"HTTP/1.1 200")
        finally:
            stream.close()
            fresh.close()
            for sock in idle:
                sock.close()


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    content_length = re.search(rb"(?i)content-length: *([0-9]+)", head)
    assert content_length, head
    length = int(content_length.group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return head
