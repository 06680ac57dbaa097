"""Samples processes from /proc while a benchmark runs: CPU seconds and RSS per group of
processes (server workers, Redis, load generators...), their open files, the machine's
busy time, and Redis's connected clients. Linux only; reads, never signals.
"""
from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import redis

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def children_of(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def softirq_threads() -> list[int]:
    """The kernel's ksoftirqd/N threads. When one process sends thousands of packets in a burst,
    the kernel defers part of their network processing (on loopback: the receiving socket's
    side too) to these threads, and no process's CPU time shows it: a benchmark that compares
    servers by their own CPU must count these beside them."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.joinpath("comm").read_text().startswith("ksoftirqd/"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS   # utime + stime


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except OSError:
        return 0


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _CLOCK_TICKS


@dataclass
class Sample:
    at: float
    cpu: dict[str, float]        # cumulative CPU seconds per group since the first sample
    rss: dict[str, int]          # bytes per group
    machine_busy: float
    redis_clients: int | None
    workers: dict[int, tuple[float, int]]   # each gunicorn worker's CPU seconds and RSS bytes


@dataclass
class ProcessSampler:
    """Every `interval` s: CPU seconds and RSS per group of processes, the machine's CPU, Redis's clients."""

    groups: Callable[[], dict[str, list[int]]]
    redis_client: redis.Redis
    interval: float = 1.0
    fds_every: int = 5
    samples: list[Sample] = field(default_factory=list)
    fds_max: dict[str, dict[int, int]] = field(default_factory=dict)
    pids_seen: dict[str, set[int]] = field(default_factory=dict)
    _last_cpu: dict[int, float] = field(default_factory=dict)
    _cumulative: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def run(self, until: float) -> None:
        while time.time() < until:
            self.sample()
            gevent.sleep(self.interval)

    def sample(self) -> None:
        first = not self.samples
        rss: Counter[str] = Counter()
        workers: dict[int, tuple[float, int]] = {}
        for group, pids in self.groups().items():
            for pid in pids:
                seconds = _cpu_seconds(pid)
                if seconds is None:
                    continue
                # A process born after the first sample counts from its start.
                self._cumulative[group] += seconds - self._last_cpu.get(pid, seconds if first else 0.0)
                self._last_cpu[pid] = seconds
                resident = _rss_bytes(pid)
                rss[group] += resident
                if group == "workers":
                    workers[pid] = (seconds, resident)
                self.pids_seen.setdefault(group, set()).add(pid)
                if len(self.samples) % self.fds_every == 0 and group not in ("exchange", "softirq"):
                    try:
                        count = len(os.listdir(f"/proc/{pid}/fd"))
                    except OSError:
                        continue
                    per_pid = self.fds_max.setdefault(group, {})
                    per_pid[pid] = max(per_pid.get(pid, 0), count)
        try:
            clients: int | None = int(self.redis_client.info("clients")["connected_clients"])
        except redis.RedisError:
            clients = None
        self.samples.append(Sample(time.time(), dict(self._cumulative), dict(rss), _machine_busy_seconds(), clients,
                                   workers))

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]

    def nearest(self, at: float) -> Sample:
        return min(self.samples, key=lambda s: abs(s.at - at))

    def cpu_percent(self, start: float, end: float) -> tuple[dict[str, float], float]:
        """Per group, % of one core over [start, end]; and the machine's busy % (200 = both cores)."""
        first, last = self.nearest(start), self.nearest(end)
        span = max(last.at - first.at, 1e-9)
        groups = {g: round(100 * (last.cpu.get(g, 0) - first.cpu.get(g, 0)) / span, 1) for g in last.cpu}
        return groups, round(100 * (last.machine_busy - first.machine_busy) / span, 1)

    def per_worker(self, start: float, end: float) -> list[dict[str, float]]:
        """Each gunicorn worker's % of one core over [start, end] and its peak RSS in MB."""
        first, last = self.nearest(start), self.nearest(end)
        span = max(last.at - first.at, 1e-9)
        return [{"pid": pid, "cpu_pct": round(100 * (cpu - first.workers.get(pid, (cpu, 0))[0]) / span, 1),
                 "rss_mb_peak": round(max(s.workers.get(pid, (0, 0))[1] for s in self.between(start, end)
                                          or [last]) / 2**20, 1)}
                for pid, (cpu, _) in sorted(last.workers.items())]
