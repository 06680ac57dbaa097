"""How long a worker takes to refuse an oversized request line, and what it does to a stream meanwhile.

    .venv/bin/python -m bench.request_line                       # gunicorn.conf.py's limits
    .venv/bin/python -m bench.request_line --parser python --limit-request-line 0   # unbounded

Starts the simulator and one gunicorn worker on loopback, opens one watching SSE stream,
then sends request lines of each size from 127.0.0.2 (one at a time) and reports the time
until the server's answer (or close) and the watching stream's worst price age (receipt −
exchange event time) in the second around each. Stops by itself.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import threading
import time

from tests.support.gunicorn import GunicornProcess
from tests.support.simulator import SimulatorProcess
from tests.support.sse_client import SSEClient
from tests.support.waiting import wait_until

PREFIX = "/api/market-data"


def refuse_time(port: int, size: int) -> tuple[float, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=("127.0.0.2", 0))
    line = b"GET " + PREFIX.encode() + b"/prices?pairs=" + b"A" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n"

    def send() -> None:
        try:
            sock.sendall(line)
        except OSError:
            pass
    started = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        answer = sock.recv(64)
    except OSError as exc:
        answer = repr(exc).encode()
    elapsed = time.monotonic() - started
    sock.close()
    sender.join(30)
    return elapsed, answer.split(b"\r\n", 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit-request-line", type=int, default=None,
                        help="override gunicorn.conf.py (0 = unbounded)")
    parser.add_argument("--parser", choices=("auto", "fast", "python"), default=None,
                        help="gunicorn's http_parser (default: gunicorn.conf.py's choice)")
    parser.add_argument("--sizes", default="65536,1048576,8388608")
    args = parser.parse_args()
    env = {"PRICEFEED_PAIRS": "BTC/USD,ETH/USD", "PRICEFEED_LOG_LEVEL": "WARNING"}
    overrides = []
    if args.limit_request_line is not None:
        overrides.append(f"--limit-request-line {args.limit_request_line}")
    if args.parser is not None:
        overrides.append(f"--http-parser {args.parser}")
    os.environ["GUNICORN_CMD_ARGS"] = " ".join(overrides)
    load_before = open("/proc/loadavg").read().split()[:3]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    rows = []
    with SimulatorProcess(pairs="BTCUSDT,ETHUSDT", rate=50) as sim, \
            GunicornProcess(workers=1, env={**env, "PRICEFEED_UPSTREAM_URL": sim.ws_url}) as app:
        watcher = SSEClient(app.url + PREFIX + "/stream")
        watcher.wait_for(lambda c: len(c.of("price")) >= 20, 20, "prices")
        for size in (int(s) for s in args.sizes.split(",")):
            start_wall = time.time()
            elapsed, answer = refuse_time(app.port, size)
            window_end = time.time() + 1.0
            wait_until(lambda: watcher.of("price")[-1].received_at > window_end, 15, message="prices after")
            ages = [e.received_at - e.json()["ts"] / 1000 for e in watcher.of("price")
                    if start_wall - 0.5 <= e.received_at <= window_end]
            rows.append({"line_bytes": size, "answer": answer.decode("latin-1"), "refused_after_s": round(elapsed, 3),
                         "watcher_worst_age_ms": round(max(ages) * 1000, 1) if ages else None,
                         "watcher_prices": len(ages)})
        watcher.close()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "gunicorn_overrides": os.environ["GUNICORN_CMD_ARGS"] or "none (gunicorn.conf.py)",
        "loadavg_before": load_before, "rows": rows,
        "load_generator_cpu_s": round(cpu_after.ru_utime + cpu_after.ru_stime
                                      - cpu_before.ru_utime - cpu_before.ru_stime, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
