"""Server CPU per stream opened and closed: pricefeed against a bare gevent SSE server, same run.

    flock /tmp/pricefeed-bench.lock .venv/bin/python -m bench.open_cost [--streams 4000 --rate 800]

N streams are opened at a fixed rate (each: connect, GET, read the head and the snapshot
event, hold `--hold` seconds, close) against bench/bare_sse_server.py and against pricefeed
(real gunicorn, the repository's gunicorn.conf.py, `--workers` workers, no Redis, the
simulator's 10 pairs quiet at 1 trade/s, 3 pairs per stream). For each server: its whole
process tree's CPU (utime + stime from /proc) over the ramp and until the last stream has
closed, minus what the tree spends idle over as long (measured just before), per stream
in µs; then the ratio pricefeed / bare, and this generator's own CPU per stream. One client
address: pricefeed's per-address cap and its share of the admission gate are lifted (the
bench's doing, not an overload: bench/stream_memory.one_worker_env). Loopback only; bounded.
The servers run one after the other, `--rounds` times, alternating, so both see the same machine.
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
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

from bench.fanout_client import raise_open_files_limit  # noqa: E402
from bench.fanout_scenarios import SCENARIOS, SYMBOLS, client_pairs  # noqa: E402
from bench.stream_memory import one_worker_env  # noqa: E402
from bench.stream_open import top_functions  # noqa: E402
from tests.support.gunicorn import GunicornProcess  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402
from tests.support.waiting import free_port, wait_until  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
IDLE_S = 3.0
ROOT = Path(__file__).resolve().parents[1]


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])       # utime + stime
    return total / CLOCK_TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def open_and_close(port: int, path: str, hold_s: float, errors: list[str]) -> None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        try:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
            head = b""
            while b"event: snapshot" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError(f"closed before the snapshot: {head[:120]!r}")
                head += chunk
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:120].decode("latin-1"))
            gevent.sleep(hold_s)
        finally:
            sock.close()
    except Exception as exc:  # noqa: BLE001 - counted and shown
        errors.append(str(exc)[:120])


def measure(tree: list[int], port: int, paths: Callable[[int], str], args: argparse.Namespace,
            profile: str | None = None, open_streams: Callable[[], int] | None = None) -> dict:
    """Idle first, then the ramp; CPU per stream with the idle rate subtracted. With `profile`,
    py-spy samples the tree's last process (the worker) during the ramp into that file."""
    time.sleep(1)
    before = tree_cpu_seconds(tree)
    time.sleep(IDLE_S)
    idle_rate = (tree_cpu_seconds(tree) - before) / IDLE_S
    spy = None
    if profile:
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(tree[-1]), "--format", "raw", "--rate", "250",
                                "--output", profile, "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)      # py-spy attaches
    errors: list[str] = []
    greenlets = []
    server_before, own_before, started = tree_cpu_seconds(tree), own_cpu_seconds(), time.monotonic()
    for index in range(args.streams):
        delay = started + index / args.rate - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        greenlets.append(gevent.spawn(open_and_close, port, paths(index), args.hold, errors))
    ramp_s = time.monotonic() - started
    gevent.joinall(greenlets, timeout=60)
    time.sleep(0.5)          # the server notices the last closes
    if open_streams is not None:
        # pricefeed notices a client that left at its next write to it (a price or the 15 s ping):
        # the window ends once it has let every stream go, so closing is counted too.
        wait_until(lambda: open_streams() == 0, 40, interval=0.5, message="every stream let go")
    took = time.monotonic() - started
    server_cpu = tree_cpu_seconds(tree) - server_before
    own_cpu = own_cpu_seconds() - own_before
    if spy is not None:
        spy.send_signal(2)
        spy.wait(30)
    opened = args.streams - len(errors)
    return {"streams": args.streams, "errors": len(errors), "first_errors": sorted(set(errors))[:3],
            "ramp_s": round(ramp_s, 2), "window_s": round(took, 2),
            "idle_cpu_pct": round(100 * idle_rate, 1), "server_cpu_s": round(server_cpu, 2),
            "server_us_per_stream": round(1e6 * max(0.0, server_cpu - idle_rate * took) / max(opened, 1)),
            "generator_us_per_stream": round(1e6 * own_cpu / max(opened, 1)),
            "generator_cpu_pct": round(100 * own_cpu / took, 1)}


@contextmanager
def bare_server(pywsgi: bool = False) -> Iterator[tuple[int, int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare_sse_server", "--port", str(port)]
                            + (["--pywsgi"] if pywsgi else []), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"bare server did not start: {line!r}")
        yield proc.pid, port
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=800, help="streams opened per second")
    parser.add_argument("--hold", type=float, default=0.5, help="seconds each stream stays open")
    parser.add_argument("--workers", type=int, default=1, help="pricefeed's gunicorn workers")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--also-pywsgi", action="store_true",
                        help="also measure the bare server under gevent.pywsgi (a real HTTP parser), for reference")
    parser.add_argument("--profile", help="py-spy's collapsed stacks of pricefeed's worker (last round) to this "
                        "file; the profiler's own CPU is not in the tree, but it slows the worker")
    args = parser.parse_args()
    if not 0 < args.streams <= 20_000 or not 0 < args.rate <= 5000 or not 0 <= args.hold <= 10 \
            or not 0 < args.rounds <= 5 or not 0 < args.workers <= 4:
        raise SystemExit("streams 1..20,000, rate 1..5,000/s, hold 0..10 s, rounds 1..5, workers 1..4")
    raise_open_files_limit()
    scenario = SCENARIOS["widget"]

    def paths(index: int) -> str:
        return "/api/market-data/stream?pairs=" + ",".join(client_pairs(scenario, index))

    rounds = []
    with SimulatorProcess(pairs=",".join(SYMBOLS), rate=1) as sim:
        concurrent = int(args.rate * (args.hold + 2)) + 100
        env = one_worker_env(sim, max_clients=max(concurrent, 1000))
        with GunicornProcess(workers=args.workers, env=env) as app, bare_server() as (bare_pid, bare_port), \
                bare_server(pywsgi=True) as (pywsgi_pid, pywsgi_port):
            wait_until(lambda: app.health()["mode"] == "live", 30, message="live")
            pricefeed_tree = process_tree(app.proc.pid)
            for round_index in range(args.rounds):
                bare = measure([bare_pid], bare_port, paths, args)
                pricefeed = measure(pricefeed_tree, app.port, paths, args,
                                    args.profile if round_index == args.rounds - 1 else None,
                                    lambda: app.health()["clients"]["clients"])
                row = {"bare": bare, "pricefeed": pricefeed,
                       "ratio": round(pricefeed["server_us_per_stream"] / max(bare["server_us_per_stream"], 1), 2)}
                if args.also_pywsgi:
                    row["bare_pywsgi"] = measure([pywsgi_pid], pywsgi_port, paths, args)
                    row["ratio_to_pywsgi"] = round(pricefeed["server_us_per_stream"]
                                                   / max(row["bare_pywsgi"]["server_us_per_stream"], 1), 2)
                rounds.append(row)
    report: dict = {"streams": args.streams, "rate": args.rate, "hold_s": args.hold, "workers": args.workers,
                    "rounds": rounds}
    if args.profile and Path(args.profile).exists():
        report["profile_inclusive_pct"] = top_functions(Path(args.profile).read_text(errors="replace"), 40)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
