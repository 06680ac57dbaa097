"""A multi-instance deployment on one Redis, and ways to find and hurt its leader."""
from __future__ import annotations

import uuid

from .gunicorn import GunicornProcess
from .waiting import wait_until

PAIRS = "BTC/USD,ETH/USD,SOL/USD"
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"


# Every client of these tests and benchmarks comes from 127.0.0.1: per-address limits off
# (tests/integration/test_public_endpoint.py tests them).
ONE_ADDRESS_LOAD = {"PRICEFEED_MAX_STREAMS_PER_IP": "1000000", "PRICEFEED_NEW_STREAMS_SHARE_PER_IP": "1",
                    "PRICEFEED_MAX_PENDING_PER_IP": "0"}


def instance_env(sim, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url,
           "PRICEFEED_PAIRS": PAIRS, "PRICEFEED_REDIS_URL": redis_url,
           "PRICEFEED_REDIS_PREFIX": prefix, "PRICEFEED_HEARTBEAT_INTERVAL": "1",
           "PRICEFEED_MAX_CLIENTS": "500", **ONE_ADDRESS_LOAD}
    env.update(extra)
    return env


def new_prefix() -> str:
    return "pf-test-" + uuid.uuid4().hex[:8]


def leader_pid(instances: list[GunicornProcess], timeout: float = 15) -> int:
    """The pid of the worker holding the lease, as the deployment's /health reports it."""
    worker_pids = {pid for instance in instances for pid in instance.worker_pids()}

    def find():
        # Asked of the leader itself: a follower's view lags a handover by a heartbeat.
        for instance in instances:
            health = instance.health()
            if health["worker"]["role"] == "leader":
                pid = int(health["worker"]["id"].rsplit(":", 1)[1])
                if pid in worker_pids:
                    return pid
        return None
    return wait_until(find, timeout, message="a leader")


def all_live(instances: list[GunicornProcess], timeout: float = 20) -> None:
    """Every worker of every instance says live (health lands on a random worker: ask until all have)."""
    for instance in instances:
        workers = len(instance.worker_pids()) or 1
        seen_live: set[str] = set()

        def every_worker_live():
            health = instance.health()
            if health["mode"] != "live":
                seen_live.discard(health["worker"]["id"])
                return False
            seen_live.add(health["worker"]["id"])
            return len(seen_live) >= workers
        wait_until(every_worker_live, timeout, interval=0.02, message=f"{instance.url} live on every worker")
