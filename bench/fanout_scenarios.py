"""The fan-out benchmark's scenarios: the market, who reads which pairs, and the p99 bound.

Shared by the orchestrator (bench/fanout.py) and its load generators (bench/fanout_client.py).
"""
from __future__ import annotations

from dataclasses import dataclass

PAIRS = ("BTC/USD", "ETH/USD", "SOL/USD", "BNB/USD", "XRP/USD",
         "ADA/USD", "DOGE/USD", "LTC/USD", "DOT/USD", "LINK/USD")
SYMBOLS = tuple(pair.split("/")[0] + "USDT" for pair in PAIRS)
@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float                  # exchange trades per second, all pairs together
    pairs_per_client: int
    min_update_interval: float   # pricefeed's per-client conflation; Flask-SSE has none
    p99_bound_ms: float


SCENARIOS = {
    "widget": Scenario("widget", rate=100, pairs_per_client=3, min_update_interval=1, p99_bound_ms=1000),
    "trader": Scenario("trader", rate=20, pairs_per_client=10, min_update_interval=0, p99_bound_ms=100),
}


def client_pairs(scenario: Scenario, index: int) -> tuple[str, ...]:
    """Client `index`'s pairs: consecutive pairs from a rotating start, so every pair has as many readers."""
    if scenario.pairs_per_client >= len(PAIRS):
        return PAIRS
    return tuple(PAIRS[(index + k) % len(PAIRS)] for k in range(scenario.pairs_per_client))


def flask_sse_channels(scenario: Scenario) -> list[str]:
    """One Flask-SSE channel per distinct set of pairs a client reads, named by those pairs."""
    return sorted({",".join(client_pairs(scenario, index)) for index in range(len(PAIRS))})


def stream_path(target: str, pairs: tuple[str, ...]) -> str:
    if target == "pricefeed":
        return "/api/market-data/stream?pairs=" + ",".join(pairs)
    return "/stream?channel=" + ",".join(pairs)
