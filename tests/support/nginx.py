"""A real nginx (the Debian package) in the foreground, running deploy/nginx/pricefeed.conf.

The deploy file is used as it is, with two lines changed: where it listens (a free
loopback port instead of 80) and where gunicorn is (instead of 127.0.0.1:8000).
Everything nginx writes — pid, logs, temp files — goes to a temp directory given as
its prefix (`-p`), with the error log set on the command line (`-e`) so not even
start-up touches /var/log/nginx.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .waiting import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CONF = ROOT / "deploy" / "nginx" / "pricefeed.conf"
NGINX = "/usr/sbin/nginx"


def deploy_conf_for(upstream_port: int, listen_port: int) -> str:
    """The deploy file with its listen port and upstream address replaced (each exactly once)."""
    text = DEPLOY_CONF.read_text()
    replacements = {"    listen 80;": f"    listen 127.0.0.1:{listen_port};",
                    "    server 127.0.0.1:8000;": f"    server 127.0.0.1:{upstream_port};"}
    for old, new in replacements.items():
        if text.count(old) != 1:
            raise AssertionError(f"{DEPLOY_CONF} no longer has exactly one line {old.strip()!r}")
        text = text.replace(old, new)
    return text


class NginxProcess:
    """nginx in front of gunicorn on `upstream_port`; `url` is nginx's."""

    def __init__(self, upstream_port: int, health_path: str = "/api/market-data/health"):
        if not os.access(NGINX, os.X_OK):
            raise RuntimeError(f"{NGINX} is missing: ./test.sh installs nginx with apt-get")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="nginx-test-"))
        (self.dir / "pricefeed.conf").write_text(deploy_conf_for(upstream_port, self.port))
        temp_paths = "\n".join(f"    {kind}_temp_path {self.dir / kind};"
                               for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root;\n" if os.geteuid() == 0 else ""   # workers keep our rights on the temp dir
        (self.dir / "nginx.conf").write_text(f"""{user}daemon off;
worker_processes 1;
pid {self.dir / 'nginx.pid'};
error_log {self.dir / 'error.log'} info;
events {{ worker_connections 4096; }}
http {{
    access_log {self.dir / 'access.log'};
{temp_paths}
    include {self.dir / 'pricefeed.conf'};
}}
""")
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            wait_until(lambda: self._answering(health_path), 10, message=f"nginx on {self.url}")
        except BaseException:
            self.stop()
            raise

    def _answering(self, path: str) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self.error_log()}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.url + path, timeout=2) as response:
                return response.status in (200, 503)
        except urllib.error.HTTPError as error:
            return error.code in (200, 503)

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)      # fast: a graceful stop would wait for every stream
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> NginxProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
