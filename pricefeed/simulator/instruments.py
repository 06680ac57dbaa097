"""Instruments the simulated market trades, and the fixed-point amounts it quotes.

Binance quotes every price and quantity as a decimal string with 8 decimals
("43250.12000000"). The simulator keeps amounts as integers of 1e-8 units so a
random walk can never drift into binary-float artefacts; text is produced only
at the edge, by `format_units`.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

DECIMALS = 8
UNITS_PER_ONE = 10 ** DECIMALS


def to_units(text: str) -> int:
    """`"0.0001"` -> 10000: a decimal string as an integer count of 1e-8."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal amount: {text!r}") from exc
    scaled = value * UNITS_PER_ONE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"more than {DECIMALS} decimals: {text!r}")
    return int(scaled)


def format_units(units: int) -> str:
    """10000 -> `"0.00010000"`: Binance's 8-decimal text form."""
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), UNITS_PER_ONE)
    return f"{sign}{whole}.{fraction:0{DECIMALS}d}"


def multiply_units(price: int, quantity: int) -> int:
    """Quote amount (price x quantity) in 1e-8 units, truncated like an exchange."""
    return price * quantity // UNITS_PER_ONE


@dataclass(frozen=True)
class Instrument:
    """One tradable symbol: where its price starts and the grid it moves on."""

    symbol: str
    start_price: int   # 1e-8 units
    tick_size: int     # 1e-8 units: the smallest price step
    lot_size: int      # 1e-8 units: the smallest quantity step


# Realistic early-2024 levels and Binance's own filters for these pairs.
_KNOWN = {
    "BTCUSDT": ("43000.00", "0.01", "0.00001"),
    "ETHUSDT": ("2300.00", "0.01", "0.0001"),
    "SOLUSDT": ("100.00", "0.01", "0.001"),
    "BNBUSDT": ("300.00", "0.01", "0.001"),
    "XRPUSDT": ("0.6000", "0.0001", "0.1"),
    "BTCUSD": ("43080.00", "0.01", "0.00001"),     # Binance.US lists it beside BTCUSDT
}
# Anything else the user lists still trades, on a fine grid around 1.
_OTHER = ("1.00000000", "0.00001", "1")


def instrument_for(symbol: str) -> Instrument:
    """The instrument for `symbol` (upper case), with defaults for unknown pairs."""
    start, tick, lot = _KNOWN.get(symbol, _OTHER)
    return Instrument(symbol, to_units(start), to_units(tick), to_units(lot))
