"""A slow-header client (slowloris) over real sockets, for tests/integration/test_pending_connections.py
and bench/slow_headers.py; and how many connections a server holds from one address (`ss`)."""
from __future__ import annotations

import resource
import selectors
import socket
import subprocess
import threading
import time
from typing import cast

ATTACKER = "127.0.0.2"


def raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


class SlowHeaders:
    """A slowloris from one address: `connections` sockets, each sending its request head a line
    every `line_every` seconds (never the blank line); one the server closes is opened again."""

    def __init__(self, port: int, connections: int, source: str = ATTACKER, line_every: float = 2.0):
        self.port, self.connections, self.source, self.line_every = port, connections, source, line_every
        self.opened = self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowHeaders:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, selector: selectors.BaseSelector, due: dict) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((self.source, 0))
        try:
            sock.connect_ex(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            return
        selector.register(sock, selectors.EVENT_READ)
        due[sock] = (time.monotonic(), 0)
        self.opened += 1

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        due: dict[socket.socket, tuple[float, int]] = {}
        lines = [b"GET /api/market-data/health HTTP/1.1\r\n", b"Host: x\r\n"] + [b"X-Slow-%d: y\r\n" % i
                                                                                for i in range(1000)]
        try:
            while not self._stop.is_set():
                while len(due) < self.connections and not self._stop.is_set():
                    self._open(selector, due)
                    if len(due) % 200 == 0:
                        break                           # let the reads below run between bursts
                for key, _ in selector.select(timeout=0.05):
                    sock = cast(socket.socket, key.fileobj)     # only sockets are registered
                    try:
                        data = sock.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:                         # closed by the server: open another
                        self.closed_by_server += 1
                        selector.unregister(sock)
                        due.pop(sock, None)
                        sock.close()
                now = time.monotonic()
                for sock, (at, sent) in list(due.items()):
                    if now >= at:
                        try:
                            sock.send(lines[sent % len(lines)])
                        except OSError:
                            pass
                        due[sock] = (now + self.line_every, sent + 1)
        finally:
            for sock in due:
                sock.close()
            selector.close()


def accept_queue(port: int) -> int:
    """Connections the kernel completed on the listening socket that no worker has accepted yet
    (the listen socket's Recv-Q): held by the kernel, not by the server."""
    out = subprocess.run(["ss", "-Htln", f"( sport = :{port} )"], capture_output=True, text=True, check=True).stdout
    return sum(int(line.split()[1]) for line in out.splitlines() if line.strip())


def held_from(port: int, source: str) -> int:
    """Established connections the server holds from `source` (ss, the server's side)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} and dst {source} )"],
                         capture_output=True, text=True, check=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


