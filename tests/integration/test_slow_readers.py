"""Clients that read slowly, or not at all, against the real service at 100 ticks a second.

Each slow client is a real socket with a tiny receive buffer (SO_RCVBUF set before connecting,
so the window it advertises stays small): some never read after the response head, some read
a few bytes every two seconds. Beside them one ordinary client reads everything. What a user
(and an operator) observes: the ordinary client's prices stay current, the worker's memory
does not grow with the time the slow ones stay behind, and each slow client is dropped once it
has been behind for PRICEFEED_WRITE_TIMEOUT (5 s here; default 30 s) after its send buffer
(PRICEFEED_STREAM_SEND_BUFFER) filled.
"""
from __future__ import annotations

import socket
import statistics
import threading
import time

from tests.support.gunicorn import GunicornProcess
from tests.support.observe import rss_kib
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

PREFIX = "/api/market-data"
STREAM = PREFIX + "/stream?pairs=BTC/USD,ETH/USD"
WS = PREFIX + "/ws?pairs=BTC/USD,ETH/USD"
WRITE_TIMEOUT_S = 5
NEVER_READ = 10
TRICKLE = 10
WS_NEVER_READ = 5


class SlowReader:
    """An SSE request from 127.0.0.2 with a tiny receive window; reads `chunk` bytes every `every` s
    (0 bytes: never reads again). `closed_at` is when it saw the server end the connection."""

    def __init__(self, port: int, chunk: int, every: float = 2.0, websocket: bool = False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        self.sock.bind(("127.0.0.2", 0))
        self.sock.connect(("127.0.0.1", port))
        if websocket:
            self.sock.sendall((f"GET {WS} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        else:
            self.sock.sendall(f"GET {STREAM} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = b""
        self.sock.settimeout(10)
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)     # the head only: everything after it waits in the buffers
        assert head.startswith(b"HTTP/1.1 101" if websocket else b"HTTP/1.1 200"), head
        self.chunk, self.every = chunk, every
        self.closed_at: float | None = None
        self._stop = threading.Event()
        if chunk:
            threading.Thread(target=self._trickle, daemon=True).start()

    def _trickle(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.sock.recv(self.chunk):
                    self.closed_at = time.monotonic()
                    return
            except OSError:
                self.closed_at = time.monotonic()
                return

    def read_to_the_end(self, timeout: float = 10) -> bool:
        """Read what is left (it is little: the buffers are small) until the server's end: True if it came."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True       # reset: what the server drops a client that does not read with
        return False

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def price_ages(client: SSEClient, since: float) -> list[float]:
    """Seconds from each price's exchange event time to its arrival here, for prices after `since` (wall)."""
    return [event.received_at - event.json()["ts"] / 1000 for event in client.of("price") if event.received_at >= since]


def test_slow_readers_are_dropped_in_bounded_time_without_memory_growth_or_late_prices_for_others():
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=100) as sim, \
            GunicornProcess(workers=1, env={"PRICEFEED_UPSTREAM_URL": sim.ws_url, "PRICEFEED_REST_URL": sim.http_url,
                                            "PRICEFEED_PAIRS": "BTC/USD,ETH/USD",
                                            "PRICEFEED_WRITE_TIMEOUT": str(WRITE_TIMEOUT_S),
                                            "PRICEFEED_MAX_STREAMS_PER_IP": "1000",
                                            "PRICEFEED_NEW_STREAMS_SHARE_PER_IP": "1"}) as app:
        [worker] = app.worker_pids()
        wait_until(lambda: app.health()["mode"] == "live", 20, message="live prices")
        normal = SSEClient(app.url + STREAM)
        slow: list[SlowReader] = []
        try:
            normal.wait_for(lambda c: len(c.of("price")) >= 100, 20, "100 prices to the ordinary client")
            baseline_rss = rss_kib(worker)
            started, started_wall = time.monotonic(), time.time()
            slow = [SlowReader(app.port, 0) for _ in range(NEVER_READ)] + \
                   [SlowReader(app.port, 16) for _ in range(TRICKLE)] + \
                   [SlowReader(app.port, 0, websocket=True) for _ in range(WS_NEVER_READ)]
            assert app.health()["clients"]["clients"] == 1 + len(slow)

            rss = []

            def all_dropped():
                rss.append(rss_kib(worker))
                health = app.health()["clients"]
                return health if health["clients"] == 1 and health["slow_client_disconnects"] >= len(slow) else None
            wait_until(all_dropped, 60, interval=0.25, message="every slow reader to be dropped")
            dropped_after = time.monotonic() - started
            ages_while_behind = price_ages(normal, started_wall)
            growth_kib = max(rss) - baseline_rss
            print(f"{len(slow)} slow readers ({NEVER_READ} SSE never reading, {TRICKLE} SSE reading 16 B every 2 s, "
                  f"{WS_NEVER_READ} WebSocket never reading) at "
                  f"100 ticks/s, PRICEFEED_WRITE_TIMEOUT={WRITE_TIMEOUT_S}, default PRICEFEED_STREAM_SEND_BUFFER: "
                  f"all dropped {dropped_after:.1f} s after connecting; worker RSS {baseline_rss} KiB before, "
                  f"{rss[0]} KiB once connected, max {max(rss)} KiB while they were behind (+{growth_kib} KiB); the ordinary client's price "
                  f"age meanwhile: median {statistics.median(ages_while_behind) * 1000:.0f} ms, "
                  f"max {max(ages_while_behind) * 1000:.0f} ms over {len(ages_while_behind)} prices")
            # Reset, not left to trickle: the kernel frees the unread bytes at once.
            assert all(reader.read_to_the_end() for reader in slow), "every dropped client's connection ended"

            # Dropped within the write timeout after the kernel's (bounded) buffer filled: ~2 s at this rate.
            assert dropped_after < WRITE_TIMEOUT_S + 15
            # Memory: what the slow clients hold is a view of a shared chunk each, not a queue.
            assert growth_kib < 16 * 1024, (baseline_rss, rss)
            assert max(rss) - rss[0] < 4 * 1024, f"memory grew while they stayed behind: {rss}"
            # The ordinary client kept up, with current prices, the whole time.
            assert len(ages_while_behind) > 100
            assert statistics.median(ages_while_behind) < 0.5
            assert max(ages_while_behind) < 2.0
            # ... and keeps going once they are gone.
            count = len(normal.of("price"))
            normal.wait_for(lambda c: len(c.of("price")) >= count + 50, 10, "more prices")
        finally:
            normal.close()
            for reader in slow:
                reader.close()
