"""The simulator's settings and the command line that sets them."""
from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_PAIRS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
# Beyond this one market greenlet can't keep up anyway; it also bounds catch-up bursts.
MAX_RATE = 100_000.0
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
_STATUSES = ("TRADING", "HALT", "BREAK", "CANCEL_ONLY", "END_OF_DAY", "PRE_TRADING", "POST_TRADING")


@dataclass(frozen=True)
class SimulatorOptions:
    host: str = "127.0.0.1"
    port: int = 0                       # 0: the kernel picks a free port
    pairs: tuple[str, ...] = DEFAULT_PAIRS
    rate: float = 10.0                  # trade ticks per second, all symbols together
    replay: str | None = None
    speed: float = 1.0                  # replay time divisor; 0 = as fast as possible
    loop: bool = False
    ping_interval: float = 20.0
    pong_timeout: float = 60.0
    max_lifetime: float = 86400.0
    shutdown_grace: float = 5.0
    rest_weight_limit: int = 6000
    seed: int | None = None
    outbox_limit: int = 10_000          # data frames queued per client before dropping the oldest
    max_streams: int = 1024
    max_target_length: int = 8000       # characters of a handshake's request target (path and query)
    incoming_per_second: int = 5
    verbose: bool = False
    admin_anywhere: bool = False        # /_sim from any address (default: loopback peers only)
    statuses: tuple[tuple[str, str], ...] = ()   # (symbol, status) listed in another status than TRADING
    nested_errors: bool = False         # control errors as {"error":{"code","msg"},"id"} (seen live)


def _positive(text: str) -> float:
    value = float(text)   # seconds or ticks per second, never a price
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _rate(text: str) -> float:
    value = _positive(text)
    if value > MAX_RATE:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_RATE:g}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)   # seconds or a speed-up factor, never a price
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 0..65535 (0 picks a free port)")
    return value


def _symbol_shaped(symbol: str) -> bool:
    """ASCII A-Z0-9, or letters of other scripts as Binance lists them since 2025-12 (币安人生USDT)."""
    return bool(_SYMBOL.match(symbol)) or (
        2 <= len(symbol) <= 20 and all(c.isalnum() and not c.islower() for c in symbol))


def _statuses(text: str) -> tuple[tuple[str, str], ...]:
    items = []
    for part in (part.strip() for part in text.split(",") if part.strip()):
        symbol, _, status = part.partition("=")
        symbol, status = symbol.strip().upper(), status.strip().upper()
        if not _symbol_shaped(symbol) or status not in _STATUSES:
            raise argparse.ArgumentTypeError(f"expected SYMBOL=STATUS with STATUS one of {', '.join(_STATUSES)}")
        items.append((symbol, status))
    return tuple(items)


def _pairs(text: str) -> tuple[str, ...]:
    pairs = tuple(part.strip().upper() for part in text.split(",") if part.strip())
    bad = [pair for pair in pairs if not _symbol_shaped(pair)]
    if not pairs or bad:
        raise argparse.ArgumentTypeError(f"expected symbols like BTCUSDT,ETHUSDT (bad: {bad or text!r})")
    return tuple(dict.fromkeys(pairs))


def build_parser() -> argparse.ArgumentParser:
    defaults = SimulatorOptions()
    parser = argparse.ArgumentParser(
        prog="python -m pricefeed.simulator",
        description="A local exchange that speaks Binance's Spot market-data protocol.")
    add = parser.add_argument
    add("--host", default=defaults.host)
    add("--port", type=_port, default=defaults.port, help="0 picks a free port")
    add("--pairs", type=_pairs, default=defaults.pairs, help="e.g. BTCUSDT,ETHUSDT")
    add("--rate", type=_rate, default=defaults.rate, help="trade ticks per second in total")
    add("--replay", metavar="FILE", help="replay a capture instead of the random walk")
    add("--speed", type=_non_negative, default=defaults.speed, help="replay speed-up; 0 = no delays")
    add("--loop", action="store_true", help="start the replay over when it ends")
    add("--ping-interval", type=_positive, default=defaults.ping_interval)
    add("--pong-timeout", type=_positive, default=defaults.pong_timeout)
    add("--max-lifetime", type=_positive, default=defaults.max_lifetime)
    add("--shutdown-grace", type=_non_negative, default=defaults.shutdown_grace)
    add("--rest-weight-limit", type=_positive_int, default=defaults.rest_weight_limit)
    add("--seed", type=int, default=None, help="seed the random walk for repeatable runs")
    add("--outbox-limit", type=_positive_int, default=defaults.outbox_limit,
        help="frames queued per slow client before the oldest are dropped")
    add("--verbose", action="store_true", help="log every HTTP request to stderr")
    add("--status", dest="statuses", type=_statuses, default=(),
        help="list symbols in another status than TRADING, e.g. ETHUSDT=HALT,XRPUSDT=BREAK (they trade no more)")
    add("--nested-errors", action="store_true",
        help='answer bad control requests as {"error":{"code":..,"msg":..},"id":..} (a shape seen live)')
    add("--admin-anywhere", action="store_true",
        help="answer the /_sim admin API from any address (default: loopback callers only)")
    return parser


def parse_options(argv: Sequence[str] | None = None) -> SimulatorOptions:
    args = build_parser().parse_args(argv)
    return SimulatorOptions(
        host=args.host, port=args.port, pairs=args.pairs, rate=args.rate, replay=args.replay,
        speed=args.speed, loop=args.loop, ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout, max_lifetime=args.max_lifetime,
        shutdown_grace=args.shutdown_grace, rest_weight_limit=args.rest_weight_limit,
        seed=args.seed, outbox_limit=args.outbox_limit, verbose=args.verbose,
        admin_anywhere=args.admin_anywhere, statuses=args.statuses, nested_errors=args.nested_errors)
