"""The admission gate: new streams per worker at a bounded rate after a burst."""
from __future__ import annotations

import pytest

from pricefeed.delivery.admission import AdmissionGate


class ManualClock:
    def __init__(self):
        self.now = 50.0

    def __call__(self):
        return self.now


def test_a_burst_is_admitted_at_once_and_the_rest_is_spaced_at_the_rate():
    clock = ManualClock()
    gate = AdmissionGate(rate=100, burst=3, max_wait=1, clock=clock)
    waits = [gate.reserve() for _ in range(6)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.01, 0.02, 0.03])
    assert gate.status()["delayed"] == 3


def test_a_quiet_gate_refills_its_burst():
    clock = ManualClock()
    gate = AdmissionGate(rate=10, burst=2, max_wait=5, clock=clock)
    assert [gate.reserve() for _ in range(3)] == pytest.approx([0, 0, 0.1])
    clock.now += 10
    assert [gate.reserve() for _ in range(2)] == [0, 0]


def test_past_the_longest_wait_newcomers_are_refused_with_a_retry_after():
    clock = ManualClock()
    gate = AdmissionGate(rate=10, burst=1, max_wait=0.55, clock=clock)
    waits = [gate.reserve() for _ in range(8)]
    assert waits[:6] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert waits[6:] == [None, None]
    assert gate.status()["refused"] == 2
    assert gate.retry_after() >= 1
    clock.now += 0.6                                  # the queue drained
    assert gate.reserve() is not None


def test_nonsense_settings_are_refused():
    with pytest.raises(ValueError):
        AdmissionGate(rate=0, burst=1, max_wait=1)
