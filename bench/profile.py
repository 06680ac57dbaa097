"""Profile pricefeed's gunicorn workers with py-spy while bench.fanout loads them.

    .venv/bin/python -m bench.profile --scenario trader --clients 5000 --seconds 20 --out /tmp/profile

Runs one `bench.fanout --target pricefeed` round in a subprocess; once its clients
are connected, attaches `py-spy record` to every gunicorn worker for `--seconds`,
writes each worker's collapsed stacks to `<out>/worker-<pid>.txt`, and prints the
functions that hold the most samples: by self time (where the CPU goes) and
inclusive (which call paths cost it). py-spy sees the greenlet that is running,
which is what costs CPU. Needs root or ptrace rights (py-spy attaches to other
processes). Loopback only; stops by itself.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 8          # redis-server, simulator, gunicorn and the load generators start
SETTLE_S = 4           # after the ramp, before sampling


def gunicorn_workers(ancestor: int) -> list[int]:
    """gunicorn workers below `ancestor`: gunicorn processes whose parent is a gunicorn process."""
    cmdlines, parents = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdlines[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes()
            parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue

    def below(pid: int) -> bool:
        while pid > 1:
            if pid == ancestor:
                return True
            pid = parents.get(pid, 1)
        return False

    return sorted(pid for pid, cmd in cmdlines.items()
                  if b"gunicorn" in cmd and b"gunicorn" in cmdlines.get(parents.get(pid, 0), b"") and below(pid))


def summarize(collapsed: Path, top: int) -> str:
    """Top functions by self and by inclusive samples from py-spy's collapsed-stack output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{collapsed.name}: {total} samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"  top {top} by {title}:")
        for frame, samples in counter.most_common(top):
            lines.append(f"    {100 * samples / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("trader", "widget"), default="trader")
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20, help="py-spy sampling time per worker")
    parser.add_argument("--ramp", type=float, default=1000, help="connects per second (as bench.fanout)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not 0 < args.seconds <= 300 or not 0 < args.clients <= 40_000:
        raise SystemExit("seconds must be 1..300 and clients 1..40,000")
    args.out.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        found = shutil.which("py-spy")    # installed elsewhere (e.g. pip install --target, on PATH)
        if found is None:
            raise SystemExit("py-spy not found beside the interpreter nor on PATH (pip install py-spy)")
        spy = Path(found)
    duration = args.seconds + 10
    fanout = subprocess.Popen(
        [sys.executable, "-m", "bench.fanout", "--target", "pricefeed", "--scenario", args.scenario,
         "--clients", str(args.clients), "--duration", str(duration), "--ramp", str(args.ramp),
         "--json-out", str(args.out / "fanout.jsonl")], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and not workers:
            time.sleep(0.5)
            workers = gunicorn_workers(fanout.pid)
        if not workers:
            raise SystemExit("no gunicorn workers appeared within 60 s")
        time.sleep(STARTUP_S + args.clients / args.ramp + SETTLE_S)
        spies = {pid: subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration", str(int(args.seconds)),
                                        "--rate", str(args.rate), "--format", "raw", "--nonblocking",
                                        "--output", str(args.out / f"worker-{pid}.txt")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for pid in workers}
        for proc in spies.values():
            proc.wait(timeout=args.seconds + 60)
        for pid in workers:
            path = args.out / f"worker-{pid}.txt"
            print(summarize(path, args.top) if path.exists() else f"{path.name}: py-spy wrote nothing")
        fanout.wait(timeout=duration + args.clients / args.ramp + 120)
        print(f"fanout round: {args.out / 'fanout.jsonl'}")
    finally:
        if fanout.poll() is None:
            # SIGINT, not SIGTERM: bench.fanout then leaves its `with` blocks and stops the
            # gunicorn, simulator and redis-server it started (SIGTERM would orphan them).
            fanout.send_signal(signal.SIGINT)
            try:
                fanout.wait(timeout=30)
            except subprocess.TimeoutExpired:
                fanout.kill()
                fanout.wait()


if __name__ == "__main__":
    main()
