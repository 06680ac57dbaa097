"""A real redis-server on a free loopback port, owned by the test (never the one on 6379)."""
from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile

import redis

from .waiting import free_port, wait_until


def as_text(reply: object) -> str:
    """A name or value in the reply of a client without decode_responses (bytes), as text: redis-py
    types every reply as bytes | str, whichever the client decodes."""
    assert isinstance(reply, bytes), reply
    return reply.decode()


class RedisServer:
    def __init__(self, port: int | None = None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: ./test.sh installs it with apt-get")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="redis-test-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        wait_until(self.client.ping, 10, message=f"redis-server on {self.port}")

    def info_clients(self) -> int:
        return int(self.client.info("clients")["connected_clients"])

    def commands_processed(self) -> int:
        return int(self.client.info("stats")["total_commands_processed"])

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=5)

    def restart(self) -> None:
        """Start again on the same port (after kill): clients must reconnect by themselves."""
        self.__init__(self.port)  # type: ignore[misc]  # the same start-up, on the same port

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
