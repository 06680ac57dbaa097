"""What the flusher measured, kept for whoever reports it (the web layer's metrics).

Two bounded lists, filled once per flush — never per client or per write — and
taken whole by one reader: how long each flush took, and how old each price it
wrote was (exchange event time → the flush that wrote it finished). Bounded, so
nothing grows when no reader takes them: past the limit a sample is counted as
dropped instead of kept.
"""
from __future__ import annotations

SAMPLES_LIMIT = 20_000    # per list between two takes (the metrics reader takes them every second)


class FlushRecord:
    """Per-flush durations and written prices' ages, in seconds."""

    __slots__ = ("durations", "tick_ages", "dropped")

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.tick_ages: list[float] = []
        self.dropped = 0

    def add_flush(self, seconds: float) -> None:
        if len(self.durations) < SAMPLES_LIMIT:
            self.durations.append(seconds)
        else:
            self.dropped += 1

    def add_tick_age(self, seconds: float) -> None:
        if len(self.tick_ages) < SAMPLES_LIMIT:
            self.tick_ages.append(seconds)
        else:
            self.dropped += 1

    def take(self) -> tuple[list[float], list[float]]:
        """Everything recorded since the previous take: (flush durations, tick ages)."""
        durations, self.durations = self.durations, []
        ages, self.tick_ages = self.tick_ages, []
        return durations, ages
