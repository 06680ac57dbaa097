"""pricefeed as `./run.sh` starts it, for `bench/fanout.py --stock`: no capacity settings at all.

Only what any deployment must say is set — PRICEFEED_REDIS_URL, PRICEFEED_PAIRS, the
scenario's pace (PRICEFEED_MIN_UPDATE_INTERVAL), where the exchange is (the simulator) and
where to listen — so the worker count, worker_connections and the client cap are the
stock ones, derived from the open-files limit (pricefeed/capacity.py). run.sh is started
with the soft open-files limit a login shell usually has (1024, hard limit unchanged):
raising it is the service's job.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.waiting import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
LOGIN_SHELL_SOFT_LIMIT = 1024
STOCK_PREFIX = "pricefeed"          # PRICEFEED_REDIS_PREFIX's default


class RunShProcess:
    """`./run.sh` (gunicorn -c gunicorn.conf.py app:app) on a free loopback port."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="run-sh-", suffix=".log", delete=False)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRICEFEED_")}
        full_env.update(env, PRICEFEED_BIND=f"127.0.0.1:{self.port}")
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

        def login_shell_limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(LOGIN_SHELL_SOFT_LIMIT, hard), hard))
        # run.sh execs gunicorn: this pid is the master.
        self.proc = subprocess.Popen(["./run.sh"], cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=login_shell_limit)

    def health(self) -> dict:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url + "/api/market-data/health", timeout=5) as response:
            return json.loads(response.read())

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-20000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


@contextmanager
def stock_pricefeed(redis_url: str, pairs: str, min_update_interval: float, sim_ws: str,
                    sim_http: str, settings: dict[str, str] | None = None) -> Iterator[RunShProcess]:
    """`settings`: PRICEFEED_* variables a run sets on top of the stock configuration (bench --env)."""
    env = {"PRICEFEED_REDIS_URL": redis_url, "PRICEFEED_PAIRS": pairs,
           "PRICEFEED_MIN_UPDATE_INTERVAL": f"{min_update_interval:g}",
           "PRICEFEED_UPSTREAM_URL": sim_ws, "PRICEFEED_REST_URL": sim_http, **(settings or {})}
    server = RunShProcess(env)
    try:
        def live_everywhere() -> bool:
            if server.proc.poll() is not None:
                raise RuntimeError(f"run.sh exited with {server.proc.returncode}:\n{server.output()}")
            workers = len(subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True,
                                         text=True).stdout.split()) or 1
            seen = {}
            for _ in range(8 * workers):
                health = server.health()
                seen[health["worker"]["id"]] = health["mode"] == "live"
            return len(seen) >= workers and all(seen.values())
        # The first run may install run.sh's requirements into .venv.
        wait_until(live_everywhere, 180, interval=0.5, message="./run.sh live on every worker")
        yield server
    finally:
        server.stop()
