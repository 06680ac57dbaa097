"""Drive tests.support.feed_harness from a test: collect its ticks and status lines."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from .waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class FeedProcess:
    def __init__(self, upstream_url: str, pairs: list[str], **settings):
        args = [sys.executable, "-m", "tests.support.feed_harness", upstream_url, ",".join(pairs)]
        args += [f"{key}={value}" for key, value in settings.items()]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ticks: list[dict] = []
        self.status: dict = {}
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        stderr = self.proc.stderr
        assert stderr is not None              # PIPE
        threading.Thread(target=lambda: self.stderr.extend(stderr), daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None    # PIPE
        for line in self.proc.stdout:
            message = json.loads(line)
            if "tick" in message:
                self.ticks.append(message["tick"])
            else:
                self.status = message["status"]

    def wait_status(self, predicate, timeout: float = 15, message: str = "feed status"):
        return wait_until(lambda: self.status and predicate(self.status), timeout,
                          message=f"{message}; last status {self.status}; log tail {''.join(self.stderr[-5:])}")

    def wait_ticks(self, count: int, timeout: float = 15) -> None:
        start = len(self.ticks)
        wait_until(lambda: len(self.ticks) >= start + count, timeout, message=f"{count} more ticks")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
