"""Run the real service: gunicorn with gevent workers as a subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .waiting import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


class GunicornProcess:
    """`gunicorn -c gunicorn.conf.py app:app` on a free loopback port with the given PRICEFEED_* settings.

    `config`: another gunicorn config file (a host's), which reads PRICEFEED_BIND and PRICEFEED_WORKERS too."""

    def __init__(self, workers: int = 2, env: dict[str, str] | None = None, port: int | None = None,
                 wait_ready: bool = True, app: str = "app:app", config: str = "gunicorn.conf.py"):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRICEFEED_")}
        full_env.update({"PRICEFEED_BIND": f"127.0.0.1:{self.port}", "PRICEFEED_WORKERS": str(workers),
                         "PYTHONUNBUFFERED": "1"})
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", config, app],
            cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20) -> None:
        def answering():
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.output()}")
            status, _ = self.get("/api/market-data/health")
            return status in (200, 503)
        wait_until(answering, timeout, message=f"gunicorn on {self.url} to answer")

    def get(self, path: str, headers: dict | None = None, method: str = "GET",
            timeout: float = 5) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def get_json(self, path: str, **kw) -> tuple[int, dict]:
        status, body = self.get(path, **kw)
        return status, json.loads(body)

    def health(self) -> dict:
        return self.get_json("/api/market-data/health")[1]

    def prices(self, pairs: str | None = None) -> dict[str, str]:
        query = f"?pairs={pairs}" if pairs else ""
        body = self.get_json("/api/market-data/prices" + query)[1]
        return {p["pair"]: p["price"] for p in body["prices"]}

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-20000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)

    def __enter__(self) -> GunicornProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
