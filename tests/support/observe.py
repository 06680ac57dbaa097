"""What users of a deployment observe during a fault: modes announced, disconnections, memory."""
from __future__ import annotations

from pathlib import Path

from .sse_client import SSEClient


def mode_sequence(client: SSEClient) -> list[str]:
    """The modes a browser was told, in order, without repeats (snapshot first, then status events)."""
    modes: list[str] = []
    with client._lock:
        events = list(client.events)
    for event in events:
        if event.name in ("snapshot", "status"):
            mode = event.json()["mode"]
            if not modes or modes[-1] != mode:
                modes.append(mode)
    return modes


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")
