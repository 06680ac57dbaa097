"""Shared fixtures: paths to the captured Binance traffic, and the real processes tests start."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The captured Binance traffic ships with the repository (tests/fixtures/binance/README.md: sources, licences).
FIXTURES = ROOT / "tests" / "fixtures" / "binance"


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.fail(f"fixture {path} is missing from the repository")
    return path


def capture_frames(name: str) -> list[str]:
    """The raw frames of a cryptofeed capture (line 1 is the URL header)."""
    lines = fixture_path(name).read_text().splitlines()[1:]
    return [line.split(": ", 1)[1] for line in lines]


def unicornfy_samples() -> list[dict]:
    return [json.loads(line) for line in fixture_path("unicornfy-spot-samples.jsonl").read_text().splitlines()]


def last_trade_prices(name: str) -> dict[str, str]:
    """Per symbol, the `p` of the capture's last aggTrade/trade message."""
    last: dict[str, str] = {}
    for frame in capture_frames(name):
        data = json.loads(frame)["data"]
        if isinstance(data, dict) and data.get("e") in ("aggTrade", "trade"):
            last[data["s"]] = data["p"]
    return last
