"""The Flask-SSE baseline of bench/fanout.py: the app as Flask-SSE's own docs set it up, and its gunicorn.

    FLASK_SSE_REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python -m gunicorn -k gevent -w 2 --worker-connections 12000 bench.flask_sse_app:app

PyPI `flask-sse` 1.0.0 untuned: its `sse` blueprint at `/stream`, `REDIS_URL` in
`app.config`. A client reads one channel (`/stream?channel=NAME`); every stream
holds its own Redis pub/sub connection, and every message is decoded from JSON
and re-framed once per client. That is the design being compared, so nothing
here works around it. bench/flask_sse_bridge.py publishes the exchange's trades.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from flask import Flask, jsonify
from flask_sse import sse

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL_VARIABLE = "FLASK_SSE_REDIS_URL"


def create_app(redis_url: str) -> Flask:
    """Flask-SSE's documented setup, plus a `/health` route to tell when gunicorn answers."""
    app = Flask(__name__)
    app.config["REDIS_URL"] = redis_url
    app.register_blueprint(sse, url_prefix="/stream")

    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    return app


class FlaskSSEServer:
    """This app under gunicorn gevent workers on a loopback port; `stop()` (or leaving the `with`) ends it.

    The gunicorn settings are pricefeed's (gunicorn.conf.py) where they apply: same
    worker class, worker_connections, timeout and keep-alive.
    """

    def __init__(self, port: int, redis_url: str, workers: int = 2, worker_connections: int = 12000):
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix="flask-sse-", suffix=".log", delete=False)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{REDIS_URL_VARIABLE: redis_url})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers),
             "--worker-connections", str(worker_connections), "-b", f"127.0.0.1:{port}",
             "--timeout", "30", "--graceful-timeout", "10", "--keep-alive", "5",
             "--log-level", "warning", "--no-control-socket", "bench.flask_sse_app:app"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-20000:]

    def stop(self) -> None:
        # Quick shutdown (SIGQUIT): Flask-SSE streams wait on Redis forever, a graceful
        # stop would only sit out graceful_timeout.
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        Path(self.log.name).unlink(missing_ok=True)

    def __enter__(self) -> FlaskSSEServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# gunicorn imports `app` with the variable set; bench.fanout imports only FlaskSSEServer.
if REDIS_URL_VARIABLE in os.environ:
    app = create_app(os.environ[REDIS_URL_VARIABLE])
