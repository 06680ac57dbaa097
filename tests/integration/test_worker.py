"""pricefeed's gunicorn worker (pricefeed/server/worker.py) under a real gunicorn, with a real
Redis and the simulator: a host's own hooks, a graceful restart with idle keep-alive
connections open to the old workers, the stacks parked streams keep, and a gunicorn
version it does not support.

The door while shedding is in test_overload_and_restart.py, gunicorn's limit errors in
JSON in test_public_endpoint.py; both run under this worker.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import textwrap
import time

import pytest

from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

STREAM = f"/api/market-data/stream?pairs={PAIRS}"

# A host's gunicorn.conf.py: the one line, its own settings, and its own worker hooks written
# without calling or composing pricefeed's.
HOST_CONFIG = textwrap.dedent("""
    import os

    from pricefeed.gunicorn import *

    bind = os.environ["PRICEFEED_BIND"]
    workers = int(os.environ["PRICEFEED_WORKERS"])
    graceful_timeout = 10
    keepalive = 5
    control_socket_disable = True


    def post_worker_init(worker):
        worker.log.warning("host: post_worker_init %s", worker.pid)


    def worker_int(worker):
        worker.log.warning("host: worker_int %s", worker.pid)


    def worker_exit(server, worker):
        worker.log.warning("host: worker_exit %s", worker.pid)
""")


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=20) as simulator:
        yield simulator


def test_a_hosts_own_worker_hooks_without_compose_keep_the_feed_working(redis_server, sim, tmp_path):
    config = tmp_path / "host.conf.py"
    config.write_text(HOST_CONFIG)
    env = instance_env(sim, redis_server.url, new_prefix(), PRICEFEED_RESTART_SPREAD="0.5")
    env.pop("PRICEFEED_MAX_CLIENTS")            # derived by the worker
    with GunicornProcess(workers=2, env=env, config=str(config)) as app:
        all_live([app])
        workers = app.worker_pids()
        # The feed started in every worker although the host's post_worker_init never called ours.
        stream = SSEClient(app.url + STREAM)
        try:
            stream.wait_for(lambda c: len(c.of("price")) >= 3, 10, "prices")
        finally:
            stream.close()
        for pid in workers:
            assert f"host: post_worker_init {pid}" in app.output()
        # Capacity derived once, in the worker: from the open-files limit it raised.
        health = app.health()
        assert health["capacity"]["worker_connections_source"] == "derived"
        assert health["capacity"]["max_clients"] == health["clients"]["max_clients"] > 0
        # A graceful stop hands the lease over (the worker's own stop), and the host's worker_exit runs.
        app.proc.send_signal(signal.SIGTERM)
        app.proc.wait(timeout=15)
        output = app.output()
        assert len(re.findall(r"pricefeed: handed over in", output)) == 2, output[-3000:]
        for pid in workers:
            assert f"host: worker_exit {pid}" in output
        assert "SIGKILL" not in output and "graceful timeout" not in output.lower()


def test_a_quit_stops_the_feed_and_runs_the_hosts_worker_int(redis_server, sim, tmp_path):
    config = tmp_path / "host.conf.py"
    config.write_text(HOST_CONFIG)
    with GunicornProcess(workers=1, env=instance_env(sim, redis_server.url, new_prefix()), config=str(config)) as app:
        all_live([app])
        (pid,) = app.worker_pids()
        stream = SSEClient(app.url + STREAM)
        try:
            stream.wait_for(lambda c: c.of("price"), 10, "prices")
            app.proc.send_signal(signal.SIGINT)           # the master sends its workers SIGQUIT
            stream.wait_for(lambda c: c.closed, 10, "the stream closed by the quit")
        finally:
            stream.close()
        app.proc.wait(timeout=15)
        assert f"host: worker_int {pid}" in app.output()


def test_a_restart_with_idle_keepalive_connections_never_answers_503(redis_server, sim):
    """Browsers hold idle keep-alive connections to the old workers when they are restarted.
    Each next request sent on one, once its worker was told to stop, finds the connection
    closed (and a new connection reaches a new worker), never `503 shutting_down`."""
    env = instance_env(sim, redis_server.url, new_prefix(), PRICEFEED_RESTART_SPREAD="3",
                       PRICEFEED_RESTART_CLOSES_PER_SECOND="2")
    with GunicornProcess(workers=2, env=env) as app:
        all_live([app])
        old_workers = set(app.worker_pids())
        idle = [kept_alive_connection(app.port) for _ in range(12)]     # on both workers, in all likelihood
        # Streams on the old workers, closed over the spread while the next requests are sent.
        streams = [SSEClient(app.url + STREAM) for _ in range(6)]
        try:
            for stream in streams:
                stream.wait_for(lambda c: c.of("price"), 10, "prices")
            start = app.output().count("stopping: ")
            app.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: app.output().count("stopping: ") >= start + 2, 10, interval=0.01,
                       message="both old workers told to stop")
            outcomes: list[str] = []
            for sock in idle:             # as browsers coming back send their next request on them
                time.sleep(0.05)
                outcomes.append(next_request(sock))
            assert set(outcomes) == {"closed"}, outcomes
            # Sent again on a new connection, as a browser does: a new worker answers.
            for _ in idle:
                fresh = SSEClient(app.url + STREAM, timeout=10)
                try:
                    assert fresh.status == 200, (fresh.status, fresh.body)
                    snapshot = fresh.wait_for(lambda c: c.of("snapshot"), 10, "a snapshot")[0].json()
                    assert int(snapshot["worker"].rsplit(":", 1)[1]) not in old_workers
                finally:
                    fresh.close()
            # Closed by the sweep, each of them (not by an old worker's exit).
            swept = re.findall(r"stopping: 1 listener\(s\) closed, ([0-9]+) idle keep-alive connection\(s\) closed",
                               app.output())
            assert sum(map(int, swept)) == len(idle), swept
        finally:
            for stream in streams:
                stream.close()
            for sock in idle:
                sock.close()


# The accept path's greenlet that waited for the first head (or, without pending limits, took
# the connection straight to the hand-off), then the hand-off itself.
HAND_OFF = ("pricefeed/server/accept.py:_first_head", "pricefeed/server/accept.py:_handed_off_or_served",
            "pricefeed/server/handoff.py:served_by_hand_off")


def test_a_parked_stream_keeps_no_frame_of_the_worker(redis_server, sim):
    """Each open stream parks its greenlet for hours: the worker wraps no handler around it
    (its door and its keep-alive tracking run outside the connection's stack). A clean stream
    GET is handed from the accept path straight to the stream session (its only frames of the
    worker are the hand-off's); one the hand-off does not take (here: a header with `_`, which
    gunicorn maps itself) is spawned straight into gunicorn's handler."""
    with GunicornProcess(workers=1, env=instance_env(sim, redis_server.url, new_prefix()),
                         app="tests.support.stack_app:app") as app:
        all_live([app])
        streams = [SSEClient(app.url + STREAM) for _ in range(2)]
        streams.append(SSEClient(app.url + STREAM, headers={"X_Gunicorn_Maps_This": "1"}))
        try:
            for stream in streams:
                stream.wait_for(lambda c: c.of("price"), 10, "prices")
            status, body = app.get("/_test/stream-stacks")
            assert status == 200
            stacks = json.loads(body)["stacks"]
            assert len(stacks) == len(streams)
            handed_off = [stack for stack in stacks if stack[0].endswith(HAND_OFF[:2])]
            by_gunicorn = [stack for stack in stacks if stack[0].endswith("gunicorn/workers/ggevent.py:handle")]
            assert len(handed_off) == 2 and len(by_gunicorn) == 1, stacks
            for stack in by_gunicorn:
                # Spawned straight into gunicorn's handler (the hand-off's greenlet gave it its place).
                assert not [frame for frame in stack if "/pricefeed/server/" in frame], stack
            for stack in handed_off:
                assert not [frame for frame in stack if "/pricefeed/server/" in frame
                            and not frame.endswith(HAND_OFF)], stack
                assert not [frame for frame in stack if "/gunicorn/" in frame or "/flask/" in frame], stack
        finally:
            for stream in streams:
                stream.close()


def test_an_unsupported_gunicorn_is_refused_at_boot(tmp_path):
    config = tmp_path / "future.conf.py"
    config.write_text(textwrap.dedent("""
        import os

        import gunicorn

        from pricefeed.gunicorn import *

        gunicorn.version_info = (28, 0, 0)      # as a gunicorn this worker was not written for
        gunicorn.__version__ = "28.0.0"
        bind = os.environ["PRICEFEED_BIND"]
        workers = 1
        control_socket_disable = True
    """))
    app = GunicornProcess(workers=1, config=str(config), wait_ready=False)
    try:
        app.proc.wait(timeout=20)
        assert app.proc.returncode == 3, app.output()        # gunicorn's boot error: the master halts
        assert "supports gunicorn >=27.0,<28.0 and runs under gunicorn 28.0.0" in app.output()
    finally:
        app.stop()


def kept_alive_connection(port: int) -> socket.socket:
    """A connection that has been answered one request and is kept alive for the next."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET /api/market-data/prices?pairs={PAIRS} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = read_response(sock)
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
    return sock


def next_request(sock: socket.socket) -> str:
    """Send a stream request on a kept-alive connection: "closed", or the status it was answered with."""
    sock.settimeout(5)
    try:
        sock.sendall(f"GET {STREAM} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        data = sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return "closed"
    if not data:
        return "closed"
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


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
