"""A deployment across namespaced hosts: the exchange, a Redis host with Sentinel, two app hosts, clients.

    exchange   the simulator
    redis      master :6379 (first address), replica :6380 (second address), sentinels :26379-26381
    app-a/b    one gunicorn instance each (2 workers), PRICEFEED_REDIS_URL=redis+sentinel://...
    clients    SSE clients and every observation (the test process joins its namespace per call)

Nothing runs on the machine's own interfaces: each process is started with `ip netns exec`,
and the test's own sockets are opened from inside the clients' namespace (`Network.call`).
Ports are fixed because each host is a namespace of its own, where nothing else listens.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import redis

from .netns import Network
from .sse_client import SSEClient
from .waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ["exchange", "redis", "app-a", "app-b", "clients"]
APP_HOSTS = ("app-a", "app-b")
PAIRS = "BTC/USD,ETH/USD,SOL/USD"
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"
SIM_PORT, APP_PORT, MASTER_PORT, REPLICA_PORT = 9400, 8000, 6379, 6380
SENTINEL_PORTS = (26379, 26380, 26381)
MASTER_NAME = "pricefeed"
ADMIN_TOKEN = "ha-test-token"
STREAM = f"/api/market-data/stream?pairs={PAIRS}"
# No proxy from the environment: every request stays inside the namespaces.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

SENTINEL_CONF = """port {port}
bind {ip}
protected-mode no
dir {dir}
sentinel monitor {name} {master_ip} {master_port} 2
sentinel down-after-milliseconds {name} 1000
sentinel failover-timeout {name} 4000
sentinel parallel-syncs {name} 1
"""


def epoch_of(event_id: str | None) -> int:
    return int(event_id.split("-")[0]) if event_id else 0


def fencing_violations(client: SSEClient) -> list[str]:
    """Ticks of an older epoch delivered after a newer one (the local tier's `0-n` ids are outside
    every epoch), and per pair any (epoch, seq) that does not increase."""
    newest, bad = 0, []
    per_pair: dict[str, tuple[int, int]] = {}
    for event in client.of("price"):
        assert event.id is not None, event      # every price carries an id
        epoch, seq = (int(part) for part in event.id.split("-"))
        if epoch == 0:
            continue
        if epoch < newest:
            bad.append(f"{event.id} after epoch {newest}")
        newest = max(newest, epoch)
        pair = event.json()["pair"]
        if per_pair.get(pair, (0, 0)) >= (epoch, seq):
            bad.append(f"{pair} {event.id} after {per_pair[pair]}")
        per_pair[pair] = (epoch, seq)
    return bad


class Topology:
    """Starts every role; `close()` stops them and removes the namespaces."""

    def __init__(self, app_env: dict[str, str] | None = None, rate: int = 20, workers: int = 2):
        self.net = Network(HOSTS, extra_addresses={"redis": 1})
        try:
            self.dir = tempfile.mkdtemp(prefix="pf-ha-")
            self.logs: dict[str, Path] = {}
            self.workers = workers
            self.master_ip, self.replica_ip = self.net.ip("redis", 0), self.net.ip("redis", 1)
            self.exchange = self._spawn("exchange", [sys.executable, "-m", "pricefeed.simulator", "--host",
                                                     self.net.ip("exchange"), "--port", str(SIM_PORT),
                                                     "--pairs", SYMBOLS, "--rate", str(rate),
                                                     # The tests steer it from the client host.
                                                     "--admin-anywhere",
                                                     # A connection to a host cut off is closed within
                                                     # 3 s, as Binance's own ping/pong would, slower.
                                                     "--ping-interval", "1", "--pong-timeout", "2"])
            self.sim_url = f"http://{self.net.ip('exchange')}:{SIM_PORT}"
            self.redis_servers = {MASTER_PORT: self._start_redis(self.master_ip, MASTER_PORT),
                                  REPLICA_PORT: self._start_redis(self.replica_ip, REPLICA_PORT,
                                                                  replica_of=(self.master_ip, MASTER_PORT))}
            self.sentinels = [self._start_sentinel(port) for port in SENTINEL_PORTS]
            self.wait_sentinels_agree(timeout=20)
            self.redis_url = "redis+sentinel://" + ",".join(f"{self.master_ip}:{p}" for p in SENTINEL_PORTS) \
                + f"/{MASTER_NAME}/0"
            self.app_env = {
                "PRICEFEED_UPSTREAM_URL": f"ws://{self.net.ip('exchange')}:{SIM_PORT}",
                "PRICEFEED_REST_URL": self.sim_url, "PRICEFEED_PAIRS": PAIRS,
                # The simulator speaks plain ws:// and sits on another (namespaced) host, not loopback.
                "PRICEFEED_ALLOW_INSECURE_UPSTREAM": "true",
                "PRICEFEED_REDIS_URL": self.redis_url, "PRICEFEED_HEARTBEAT_INTERVAL": "1",
                "PRICEFEED_ADMIN_TOKEN": ADMIN_TOKEN, "PRICEFEED_FAULT_INJECTION": "true",
                "PRICEFEED_UPSTREAM_SILENCE_TIMEOUT": "2", "PRICEFEED_UPSTREAM_CONNECT_TIMEOUT": "2",
                "PRICEFEED_UPSTREAM_BACKOFF_CAP": "2", "PRICEFEED_LEADER_YIELD_AFTER": "4",
                "PRICEFEED_NEW_STREAMS_PER_SECOND": "5000", "PRICEFEED_MAX_CLIENTS": "5000",
                "PYTHONUNBUFFERED": "1", **(app_env or {})}
            self.apps = {host: self._start_app(host) for host in APP_HOSTS}
            for host in APP_HOSTS:
                wait_until(lambda: self.health(host).get("mode") == "live", 40, interval=0.2,
                           message=f"{host} live")
        except BaseException:
            self.close()
            raise

    # -- processes ------------------------------------------------------------------------

    def _spawn(self, host: str, args: list[str], name: str | None = None, env: dict | None = None):
        name = name or host
        log = Path(self.dir) / f"{name}.log"
        self.logs[name] = log
        with log.open("ab") as out:     # the child keeps its own copy of the descriptor
            return self.net.spawn(host, args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def _start_redis(self, ip: str, port: int, replica_of: tuple[str, int] | None = None):
        args = ["redis-server", "--port", str(port), "--bind", ip, "--bind-source-addr", ip, "--save", "",
                "--appendonly", "no", "--protected-mode", "no", "--dir", self.dir,
                "--dbfilename", f"dump-{port}.rdb", "--repl-timeout", "60"]
        if replica_of:
            args += ["--replicaof", replica_of[0], str(replica_of[1])]
        proc = self._spawn("redis", args, name=f"redis-{port}")
        wait_until(lambda: self.redis_command(ip, port, "PING"), 10, message=f"redis {ip}:{port}")
        return proc

    def _start_sentinel(self, port: int):
        conf = Path(self.dir) / f"sentinel-{port}.conf"
        conf.write_text(SENTINEL_CONF.format(port=port, ip=self.master_ip, dir=self.dir, name=MASTER_NAME,
                                             master_ip=self.master_ip, master_port=MASTER_PORT))
        return self._spawn("redis", ["redis-server", str(conf), "--sentinel"], name=f"sentinel-{port}")

    def _start_app(self, host: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRICEFEED_")}
        env.update(self.app_env, PRICEFEED_BIND=f"{self.net.ip(host)}:{APP_PORT},127.0.0.1:{APP_PORT}",
                   PRICEFEED_WORKERS=str(self.workers))
        return self._spawn(host, [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"], env=env)

    def close(self) -> None:
        self.net.close()
        if getattr(self, "dir", None):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, name: str, chars: int = 4000) -> str:
        return self.logs[name].read_text(errors="replace")[-chars:]

    # -- observing (from the clients' host) -------------------------------------------

    def _get(self, url: str, method: str = "GET", timeout: float = 3, host: str = "clients") -> tuple[int, bytes]:
        def fetch():
            request = urllib.request.Request(url, method=method,
                                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            try:
                with _OPENER.open(request, timeout=timeout) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as error:
                return error.code, error.read()
        return self.net.call(host, fetch)

    def app_url(self, host: str) -> str:
        return f"http://{self.net.ip(host)}:{APP_PORT}"

    def health(self, host: str) -> dict:
        return json.loads(self._get(self.app_url(host) + "/api/market-data/health")[1])

    def sim_stats(self) -> dict:
        return json.loads(self._get(self.sim_url + "/_sim/stats")[1])

    def sim_prices(self) -> dict[str, str]:
        return {symbol: body["price"] for symbol, body in json.loads(self._get(self.sim_url + "/_sim/prices")[1]).items()}

    def sim_market(self, **body) -> None:
        def post():
            request = urllib.request.Request(self.sim_url + "/_sim/market", data=json.dumps(body).encode(),
                                             method="POST", headers={"Content-Type": "application/json"})
            with _OPENER.open(request, timeout=3) as response:
                return response.read()
        self.net.call("clients", post)

    def open_clients(self, host: str, count: int) -> list[SSEClient]:
        clients = [self.net.call("clients", lambda: SSEClient(self.app_url(host) + STREAM)) for _ in range(count)]
        for client in clients:
            assert client.status == 200, client.body
        return clients

    def leader(self, timeout: float = 20) -> tuple[str, dict]:
        """(host, health) of the worker that says it leads (health lands on any worker: ask until one does)."""
        def find():
            for host in APP_HOSTS:
                health = self.health(host)
                if health.get("worker", {}).get("role") == "leader":
                    return host, health
            return None
        return wait_until(find, timeout, interval=0.1, message="a leader")

    def block_hub(self, host: str, worker: str, seconds: int) -> bool:
        # Fault injection answers loopback peers only: asked from the app host itself.
        url = f"http://127.0.0.1:{APP_PORT}/api/market-data/_fault/block-hub?seconds={seconds}&worker={worker}"
        return self._get(url, method="POST", timeout=seconds + 3, host=host)[0] == 200

    # -- Redis and Sentinel ----------------------------------------------------------

    def redis_command(self, ip: str, port: int, *args):
        def run():
            client = redis.Redis(host=ip, port=port, socket_timeout=2, socket_connect_timeout=2)
            try:
                return client.execute_command(*args)
            finally:
                client.close()
        return self.net.call("clients", run)

    def master_address(self) -> tuple[str, int]:
        """Where the sentinels say the master is (they must agree)."""
        answers = {tuple(self.redis_command(self.master_ip, port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                            MASTER_NAME)) for port in SENTINEL_PORTS}
        if len(answers) != 1:
            raise AssertionError(f"sentinels disagree: {answers}")
        host, port = answers.pop()
        return host.decode(), int(port)

    def wait_sentinels_agree(self, timeout: float = 15) -> tuple[str, int]:
        def agreed():
            address = self.master_address()
            replicas = self.redis_command(self.master_ip, SENTINEL_PORTS[0], "SENTINEL", "REPLICAS", MASTER_NAME)
            sentinels = self.redis_command(self.master_ip, SENTINEL_PORTS[0], "SENTINEL", "SENTINELS", MASTER_NAME)
            return address if replicas and len(sentinels) == len(SENTINEL_PORTS) - 1 else None
        return wait_until(agreed, timeout, interval=0.2, message="sentinels agreeing on a master with a replica")

    def kill_master(self) -> int:
        """SIGKILL the current master; returns its port."""
        _, port = self.master_address()
        self.redis_servers[port].kill()
        self.redis_servers[port].wait(timeout=5)
        return port

    def restart_as_replica(self, port: int) -> None:
        """Bring a killed server back, empty, as a replica of the current master (the sentinels'
        own reconfiguration would do the same a moment later)."""
        master_ip, master_port = self.master_address()
        ip = self.master_ip if port == MASTER_PORT else self.replica_ip
        self.redis_servers[port] = self._start_redis(ip, port, replica_of=(master_ip, master_port))
