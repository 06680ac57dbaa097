"""What opening one stream costs a worker in CPU — the figure that bounds a restart's recovery.

    .venv/bin/python -m bench.stream_open --clients 3000 [--profile /tmp/open.txt]

One gunicorn gevent worker (no Redis: its own exchange connection to the simulator, 10
pairs, conflated pace 1 s, as the widget scenario of bench/restart.py), and N streams of 3
pairs opened by this process, `--concurrency` at a time (each waits for its head and
preamble before its opener connects the next), then held open until the end. The market is
quiet by default (`--rate 1` trade/s), so the held streams cost the worker little and the
figure is the opening; `--rate 100` is the widget market. One client address: its share of
the admission gate is set to all of it (PRICEFEED_NEW_STREAMS_SHARE_PER_IP=1). Reports the
worker's CPU-seconds over the opening (utime + stime from /proc), per stream, and this
process's own CPU (the generator), so a reader can tell whose CPU the figure is. An idle
round of the same length first measures what the worker spends with no stream opening
(the feed, the flusher's timer), which is subtracted.

`--profile FILE` attaches py-spy to the worker while the streams open and writes the
collapsed stacks to FILE, printing the functions that hold the most samples (inclusive).
Loopback only; bounded (at most 10,000 streams), stops by itself.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

from bench.browser_round import workers_of  # noqa: E402
from bench.fanout_client import raise_open_files_limit  # noqa: E402
from bench.fanout_scenarios import SCENARIOS, SYMBOLS, client_pairs, stream_path  # noqa: E402
from bench.stream_memory import one_worker_env  # noqa: E402
from tests.support.gunicorn import GunicornProcess  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS      # utime + stime


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def open_one(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = b""
    while b"event: snapshot" not in head:      # the head and the preamble's snapshot
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"stream closed before its preamble: {head[:300]!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:300])
    return sock


def top_functions(collapsed: str, limit: int = 25) -> list[tuple[str, float]]:
    """Inclusive share of samples per function (each counted once per stack)."""
    inclusive: Counter = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] += int(count)
    return [(frame, round(100 * n / max(total, 1), 1)) for frame, n in inclusive.most_common(limit)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8, help="streams being opened at once")
    parser.add_argument("--rate", type=float, default=1.0, help="the simulator's trades per second")
    parser.add_argument("--profile", help="write py-spy's collapsed stacks of the worker to this file")
    args = parser.parse_args()
    if not 0 < args.clients <= 10_000 or not 0 < args.concurrency <= 100:
        raise SystemExit("clients 1..10,000, concurrency 1..100")
    raise_open_files_limit()
    scenario = SCENARIOS["widget"]
    with SimulatorProcess(pairs=",".join(SYMBOLS), rate=args.rate) as sim:
        env = one_worker_env(sim, max_clients=args.clients + 100)
        with GunicornProcess(workers=1, env=env) as app:
            wait_until(lambda: app.health()["mode"] == "live", 20, message="live")
            worker = workers_of(app)[0]
            time.sleep(1)
            idle_s = 3.0
            before = cpu_seconds(worker)
            time.sleep(idle_s)
            idle_rate = (cpu_seconds(worker) - before) / idle_s        # CPU-s per s with nothing opening
            spy = None
            if args.profile:
                spy = subprocess.Popen(["py-spy", "record", "--pid", str(worker), "--format", "raw",
                                        "--rate", "500", "--output", args.profile, "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.5)        # py-spy attaches
            held: list[socket.socket] = []
            worker_before, own_before, started = cpu_seconds(worker), own_cpu_seconds(), time.monotonic()
            try:
                indexes = iter(range(args.clients))

                def opener():
                    for index in indexes:      # shared: each opener takes the next index
                        held.append(open_one(app.port, stream_path("pricefeed", client_pairs(scenario, index))))
                openers = [gevent.spawn(opener) for _ in range(args.concurrency)]
                gevent.joinall(openers, raise_error=True)
                took = time.monotonic() - started
                worker_cpu = cpu_seconds(worker) - worker_before
                own_cpu = own_cpu_seconds() - own_before
            finally:
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(30)
                for sock in held:
                    sock.close()
    opening_cpu = max(0.0, worker_cpu - idle_rate * took)
    report = {"clients": args.clients, "concurrency": args.concurrency, "rate": args.rate, "took_s": round(took, 2), "opens_per_s": round(args.clients / took),
              "worker_cpu_s": round(worker_cpu, 2), "worker_idle_cpu_pct": round(100 * idle_rate, 1),
              "worker_cpu_ms_per_open": round(1000 * opening_cpu / args.clients, 3),
              "worker_cpu_pct_while_opening": round(100 * worker_cpu / took, 1),
              "generator_cpu_s": round(own_cpu, 2), "generator_cpu_pct": round(100 * own_cpu / took, 1)}
    if args.profile and Path(args.profile).exists():
        report["profile_inclusive_pct"] = top_functions(Path(args.profile).read_text())
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
