"""Run the Binance-compatible simulator (`python -m pricefeed.simulator`) as a subprocess.

    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=50, ping_interval=1) as sim:
        websocket.create_connection(sim.ws_url + "/ws/btcusdt@aggTrade")
        sim.fault(fault="drop")
        sim.stats()["connections_open"]

Keyword arguments are the simulator's command-line options with dashes as
underscores (`ping_interval=1` -> `--ping-interval 1`; `loop=True` -> `--loop`).
The simulator picks its own free port (`--port 0`) and reports it on stdout,
so parallel tests never race for a port.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on http://(\[[^\]]+\]|[^:\s]+):(\d+)")
# Loopback only: never route a test's request through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SimulatorProcess:
    """One simulator process; `stop()` (or leaving the `with`) ends it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 15.0,
                 **options: Any) -> None:
        self.host = host
        self._stderr_text: str | None = None
        self._stdout = tempfile.NamedTemporaryFile(prefix="simulator-", suffix=".out", delete=False)
        self._stderr = tempfile.NamedTemporaryFile(prefix="simulator-", suffix=".err", delete=False)
        args = [sys.executable, "-m", "pricefeed.simulator", "--host", host, "--port", str(port)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is False or value is None:
                continue
            elif isinstance(value, (list, tuple)):
                args += [flag, ",".join(str(item) for item in value)]
            else:
                args += [flag, str(value)]
        self.args = args
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._stdout,
                                     stderr=self._stderr, start_new_session=True)
        try:
            self.port = self._wait_listening(startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.http_url = f"http://{host}:{self.port}"
        self.ws_url = f"ws://{host}:{self.port}"

    def _wait_listening(self, timeout: float) -> int:
        def listening() -> int | None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {self.proc.returncode} before listening "
                                   f"({' '.join(self.args)}):\n{self.stderr()}")
            match = _LISTENING.search(Path(self._stdout.name).read_text(errors="replace"))
            return int(match.group(2)) if match else None
        try:
            # wait_until returns the first truthy answer: a port.
            return wait_until(listening, timeout, message="the simulator's 'listening on' line")
        except AssertionError as error:
            raise AssertionError(f"{error}\nsimulator stderr:\n{self.stderr()}") from None

    # -- HTTP ----------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None,
                timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
        """`(status, headers, body)` of one HTTP request; 4xx/5xx are returned, not raised."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.http_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def get_json(self, path: str) -> Any:
        return self._json("GET", path)

    def post_json(self, path: str, body: Any) -> Any:
        return self._json("POST", path, body)

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        status, _, raw = self.request(method, path, body)
        if status != 200:
            raise AssertionError(f"{method} {path} -> {status}: {raw[:500]!r}")
        return json.loads(raw)

    def stats(self) -> dict[str, Any]:
        return self.get_json("/_sim/stats")

    def reset_stats(self) -> dict[str, int]:
        return self.post_json("/_sim/stats/reset", {})

    def prices(self) -> dict[str, dict[str, Any]]:
        """`{"BTCUSDT": {"price": "43250.12000000", "ts": ms, "trade_id": id}}`."""
        return self.get_json("/_sim/prices")

    def market(self, **body: Any) -> dict[str, Any]:
        """`market(paused=True)`, `market(rate=50)`; with no arguments, the current state."""
        return self.post_json("/_sim/market", body) if body else self.get_json("/_sim/market")

    def fault(self, **body: Any) -> dict[str, Any]:
        """`fault(fault="silence", duration=2)`; raises if the simulator rejects it."""
        return self.post_json("/_sim/fault", body)

    def connections(self) -> list[dict[str, Any]]:
        return self.get_json("/_sim/connections")

    def list_symbol(self, symbol: str, status: str | None) -> dict[str, Any]:
        """Change the catalogue: `list_symbol("ETHUSDT", "HALT")`; status None delists it."""
        return self.post_json("/_sim/listing", {"symbol": symbol, "status": status})

    # -- process -----------------------------------------------------------------------

    def stderr(self) -> str:
        if self._stderr_text is not None:
            return self._stderr_text
        return Path(self._stderr.name).read_text(errors="replace")[-20000:]

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it doesn't exit in time; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._stderr_text is None:
            self._stderr_text = self.stderr()
            for file in (self._stdout, self._stderr):
                file.close()
                Path(file.name).unlink(missing_ok=True)
        return self.proc.returncode

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
