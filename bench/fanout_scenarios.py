"""The fan-out benchmark's scenarios: the market, who reads which pairs, and the p99 bound.

Shared by the orchestrator (bench/fanout.py) and its load generators (bench/fanout_client.py).
"""
from __future__ import annotations

from dataclasses import dataclass

PAIRS = ("BTC/USD", "ETH/USD", "SOL/USD", "BNB/USD", "XRP/USD",
         "ADA/USD", "DOGE/USD", "LTC/USD", "DOT/USD", "LINK/USD")
SYMBOLS = tuple(pair.split("/")[0] + "USDT" for pair in PAIRS)
@dataclass(frozen=True)
class ClientGroup:
    """Clients of one kind in a mixed scenario: their pairs, their `interval` and their p99 bound."""
    name: str
    pairs_per_client: int
    interval_ms: int | None      # the `interval=` they ask for (None: none, the deployment's pace)
    p99_bound_ms: float


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float                  # exchange trades per second, all pairs together
    pairs_per_client: int
    min_update_interval: float   # pricefeed's deployment pace (PRICEFEED_MIN_UPDATE_INTERVAL); Flask-SSE has none
    p99_bound_ms: float
    # Mixed: client i is in groups[0] if i % group_every == 0, else in groups[1].
    groups: tuple[ClientGroup, ...] = ()
    group_every: int = 0


SCENARIOS = {
    "widget": Scenario("widget", rate=100, pairs_per_client=3, min_update_interval=1, p99_bound_ms=1000),
    "trader": Scenario("trader", rate=20, pairs_per_client=10, min_update_interval=0, p99_bound_ms=100),
    # The trader on a five times faster market: every tick of 10 pairs at 100 ticks/s. Where
    # pricefeed's flushes fold ticks into one write per client (PRICEFEED_MIN_WRITE_SPACING) and a
    # bare broadcast sends each tick on its own.
    "fast-trader": Scenario("fast-trader", rate=100, pairs_per_client=10, min_update_interval=0, p99_bound_ms=100),
    # One deployment, two paces: 1 client in 20 a trader on every tick of all pairs, the rest
    # widgets at one update a second on 3 pairs.
    "mixed": Scenario("mixed", rate=100, pairs_per_client=3, min_update_interval=0, p99_bound_ms=1000,
                      groups=(ClientGroup("trader", 10, 0, 100), ClientGroup("widget", 3, 1000, 1000)),
                      group_every=20),
}


def client_group(scenario: Scenario, index: int) -> ClientGroup:
    """Client `index`'s group (a scenario without groups is one group named after it)."""
    if not scenario.groups:
        return ClientGroup(scenario.name, scenario.pairs_per_client, None, scenario.p99_bound_ms)
    return scenario.groups[0] if index % scenario.group_every == 0 else scenario.groups[1]


def client_pairs(scenario: Scenario, index: int) -> tuple[str, ...]:
    """Client `index`'s pairs: consecutive pairs from a rotating start, so every pair has as many readers."""
    count = client_group(scenario, index).pairs_per_client
    if count >= len(PAIRS):
        return PAIRS
    return tuple(PAIRS[(index + k) % len(PAIRS)] for k in range(count))


def flask_sse_channels(scenario: Scenario) -> list[str]:
    """One Flask-SSE channel per distinct set of pairs a client reads, named by those pairs."""
    return sorted({",".join(client_pairs(scenario, index)) for index in range(len(PAIRS))})


def stream_path(target: str, pairs: tuple[str, ...], interval_ms: int | None = None,
                transport: str = "sse") -> str:
    """pricefeed's /stream (SSE) or /ws (WebSocket), with `interval=` when the client asks for one."""
    if target == "pricefeed":
        endpoint = "/api/market-data/ws" if transport == "ws" else "/api/market-data/stream"
        interval = "" if interval_ms is None else f"&interval={interval_ms}"
        return f"{endpoint}?pairs={','.join(pairs)}{interval}"
    return "/stream?channel=" + ",".join(pairs)
