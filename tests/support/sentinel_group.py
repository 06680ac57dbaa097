"""A Sentinel-managed Redis on loopback: master, replica and three sentinels on free ports (no root)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from .waiting import free_port, wait_until

MASTER_NAME = "pricefeed"
CONF = """port {port}
bind 127.0.0.1
protected-mode no
dir {dir}
sentinel monitor {name} 127.0.0.1 {master_port} 2
sentinel down-after-milliseconds {name} 1000
sentinel failover-timeout {name} 4000
"""


class SentinelGroup:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sentinel-test-")
        self.ports = {"master": free_port(), "replica": free_port()}
        self.procs: dict[str, subprocess.Popen] = {}
        self._redis("master")
        self._redis("replica", replica_of=self.ports["master"])
        self.sentinel_ports = [free_port() for _ in range(3)]
        for port in self.sentinel_ports:
            conf = Path(self.dir) / f"sentinel-{port}.conf"
            conf.write_text(CONF.format(port=port, dir=self.dir, name=MASTER_NAME, master_port=self.ports["master"]))
            self.procs[f"sentinel-{port}"] = subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: len(self._ask("SENTINEL", "SENTINELS", MASTER_NAME)) == 2
                   and self._ask("SENTINEL", "REPLICAS", MASTER_NAME), 20, interval=0.2,
                   message="sentinels that know each other and the replica")
        self.url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{MASTER_NAME}/0"

    def _redis(self, role: str, replica_of: int | None = None) -> None:
        port = self.ports[role]
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--dbfilename", f"{port}.rdb", "--protected-mode", "no"]
        if replica_of:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.procs[role] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: redis.Redis(port=port, socket_timeout=1).ping(), 10, message=f"redis {role}")

    def _ask(self, *command):
        return redis.Redis(port=self.sentinel_ports[0], socket_timeout=1).execute_command(*command)

    def master_port(self) -> int:
        return int(self._ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)[1])

    def kill_master(self) -> None:
        self.procs["master"].kill()
        self.procs["master"].wait(timeout=5)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SentinelGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
