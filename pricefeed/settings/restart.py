"""Restart and stop: how a worker that stops closes its streams without a reconnect storm."""
from __future__ import annotations

from dataclasses import dataclass

from pricefeed.settings.declaration import SettingsGroup, setting


@dataclass(frozen=True)
class RestartSettings(SettingsGroup):
    TITLE = "Restart and stop"
    SUMMARY = ("A graceful stop or restart (server/worker.py, delivery/farewell.py): when the streams close, how "
               "fast, and when the browsers come back.")
    ATTRIBUTE = "restart"

    restart_spread: float = setting(
        float, 4.0,
        "On a graceful stop (TERM, HUP, a worker recycled), the longest a worker takes to close its streams in "
        "slices (kept 3 s inside gunicorn's graceful_timeout). 0: all at once.", minimum=0, maximum=120)
    restart_close_delay: float = setting(
        float, 2.0,
        "On a graceful stop of a worker holding more than NEW_STREAMS_BURST streams, the most seconds it keeps "
        "streaming after the handover before it starts closing: "
        "a reload's new workers boot meanwhile, so the first browsers back find them accepting (with Redis it "
        "ends once another worker of this host leads under a newer epoch: a successor is up).",
        minimum=0, maximum=60)
    restart_closes_per_second: float = setting(
        float, 2000.0,
        "Per worker, streams closed per second by a graceful stop (faster if RESTART_SPREAD would not "
        "suffice): what the admission gate (NEW_STREAMS_PER_SECOND) lets back in.", minimum=1, maximum=1_000_000)
    restart_retry_ms: int = setting(
        int, 1000, "Base of the `retry:` sent to each stream closed by a restart, ms.", minimum=0, maximum=600000)
    restart_retry_jitter_ms: int = setting(
        int, 3000, "Random extra per stream added to RESTART_RETRY_MS, ms.", minimum=0, maximum=600000)
