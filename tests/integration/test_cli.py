"""`flask pricefeed status|simulate|serve` and `flask run`, run as the real commands (subprocesses)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.deployment import PAIRS, SYMBOLS, all_live, instance_env, leader_pid, new_prefix
from tests.support.gunicorn import GunicornProcess
from tests.support.redis_server import RedisServer
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
FLASK = [sys.executable, "-m", "flask", "--app", "app"]
STREAM = "/api/market-data/stream"


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRICEFEED_", "FLASK_"))}
    env.update(settings, PYTHONUNBUFFERED="1")
    return env


def flask(*args: str, timeout: float = 30, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FLASK, *args], cwd=ROOT, env=_env(**settings), capture_output=True, text=True,
                          timeout=timeout)


class Background:
    """A long-running `flask ...` command, its output in a file, stopped with SIGTERM."""

    def __init__(self, *args: str, **settings: str):
        self.log = tempfile.NamedTemporaryFile(prefix="flask-cli-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([*FLASK, *args], cwd=ROOT, env=_env(**settings), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"exited with {self.proc.returncode}:\n{self.output()}")
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(pairs=SYMBOLS, rate=20) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def deployment(sim):
    with RedisServer() as redis_server:
        prefix = new_prefix()
        with GunicornProcess(workers=2, env=instance_env(sim, redis_server.url, prefix)) as server:
            all_live([server])
            yield redis_server, prefix, server


def test_status_from_redis_names_the_leader_its_epoch_and_each_pairs_age(deployment):
    redis_server, prefix, server = deployment
    pid = leader_pid([server])
    leader_health = wait_until(lambda: (h := server.health())["worker"]["role"] == "leader" and h, 10,
                               message="the leader's own health")
    result = flask("pricefeed", "status", "--json", PRICEFEED_REDIS_URL=redis_server.url,
                   PRICEFEED_REDIS_PREFIX=prefix, PRICEFEED_PAIRS=PAIRS)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "live"
    assert report["leader"].split(":")[1] == str(pid)
    assert report["epoch"] == leader_health["leader"]["epoch"]
    assert report["heartbeat"]["live"] is True
    assert set(report["pairs"]) == set(PAIRS.split(","))
    assert all(entry is not None and entry["age_s"] < 10 for entry in report["pairs"].values())

    text = flask("pricefeed", "status", PRICEFEED_REDIS_URL=redis_server.url, PRICEFEED_REDIS_PREFIX=prefix,
                 PRICEFEED_PAIRS=PAIRS)
    assert text.returncode == 0 and "mode:    live" in text.stdout and "BTC/USD" in text.stdout


def test_status_from_a_running_instances_health(deployment):
    _, _, server = deployment
    result = flask("pricefeed", "status", "--json", "--url", server.url, PRICEFEED_PAIRS=PAIRS)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "live" and report["leader"] and report["epoch"] >= 1
    assert all(entry["age_s"] < 10 for entry in report["pairs"].values())


def test_status_says_what_is_missing_when_it_cannot_read_anything():
    nothing = flask("pricefeed", "status")
    assert nothing.returncode == 2 and "--url" in nothing.stderr
    port = free_port()
    unreachable = flask("pricefeed", "status", PRICEFEED_REDIS_URL=f"redis://u:s3cret@127.0.0.1:{port}/0")
    assert unreachable.returncode == 2 and "Redis" in unreachable.stderr and "s3cret" not in unreachable.stderr


def test_simulate_runs_the_simulator():
    command = Background("pricefeed", "simulate", "--host", "127.0.0.1", "--port", "0", "--pairs", "BTCUSDT")
    try:
        def listening_line() -> str | None:
            if not command.alive():
                return None
            return next((out for out in command.output().splitlines() if "listening on" in out), None)
        line = wait_until(listening_line, 15, message="listening")
        port = int(line.rsplit(":", 1)[1].split()[0].strip("/"))
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/prices", timeout=5) as response:
            assert "BTCUSDT" in json.loads(response.read())
    finally:
        command.stop()


def test_serve_runs_the_app_under_gevent_with_prices_streaming(sim):
    port = free_port()
    command = Background("pricefeed", "serve", "--port", str(port), PRICEFEED_UPSTREAM_URL=sim.ws_url,
                         PRICEFEED_REST_URL=sim.http_url, PRICEFEED_PAIRS=PAIRS)
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        def health() -> dict:
            command.alive()
            with urllib.request.urlopen(url + "/api/market-data/health", timeout=2) as response:
                return json.loads(response.read())
        wait_until(lambda: health()["mode"] == "live", 30, message="flask pricefeed serve live")
        assert health()["clients"]["direct_writes"] is True          # gunicorn's gevent worker
        stream = SSEClient(url + STREAM + "?pairs=BTC/USD")
        try:
            assert stream.status == 200
            stream.wait_for(lambda s: s.of("price"), 15, message="a price event")
        finally:
            stream.close()
        with urllib.request.urlopen(url + "/dashboard", timeout=5) as response:
            assert response.status == 200 and b"pricefeed" in response.read()
    finally:
        command.stop()


def test_flask_run_explains_in_one_log_line_and_on_the_streams_error():
    port = free_port()
    command = Background("run", "--port", str(port), "--no-reload", PRICEFEED_UPSTREAM_URL="ws://127.0.0.1:9")
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.error
        import urllib.request

        def stream_error() -> tuple[int, dict]:
            command.alive()
            try:
                urllib.request.urlopen(url + STREAM + "?pairs=BTC/USD", timeout=5)
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())
            raise AssertionError("the stream answered 200 without gevent")
        # Said at start-up, before any request.
        wait_until(lambda: command.alive() and "pricefeed needs gevent" in command.output(), 20,
                   message="the start-up line")
        status, body = wait_until(stream_error, 20, message="flask run answering")
        assert status == 503 and body["error"] == "gevent_required"
        assert "flask pricefeed serve" in body["detail"]
        stream_error()
        with urllib.request.urlopen(url + "/api/market-data/prices", timeout=5) as response:
            assert response.status == 200
        explained = [line for line in command.output().splitlines() if "pricefeed needs gevent" in line]
        assert len(explained) == 1, command.output()
        assert "flask pricefeed serve" in explained[0]
    finally:
        command.stop()
