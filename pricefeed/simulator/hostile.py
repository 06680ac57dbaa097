"""Frames no client should trust, for `POST /_sim/fault {"fault": "hostile", "kind": ...}`.

Each is an aggTrade on the client's own stream that is well-formed JSON and
breaks exactly one rule (or, for `huge_trade_id`, is valid but would mute a
naive de-duplicator). Every other field is the symbol's real last trade, so a
client that does not check would serve it as a price.
"""
from __future__ import annotations

from typing import Any

from .streams import encode_json

HUGE_FRAME_BYTES = 12 * 1024 * 1024
HOSTILE_KINDS = (
    "time_400_digits",     # E with 400 digits: overflows `ts / 1000`
    "time_far_future",     # E = 10^30 ms
    "frame_12mb",          # one 12 MB frame
    "price_negative",      # "-1"
    "price_zero",          # "0"
    "price_leading_zeros", # "00001.5"
    "price_100k_digits",   # 100,000 digits
    "symbol_unicode",      # "BTCUSDTß" ("ß".upper() == "SS")
    "huge_trade_id",       # a valid trade with id 2^62: every later id is lower
    "ids_jump_back",       # the market's ids restart lower, as after an exchange failover
)


def hostile_frame(kind: str, stream: str, combined: bool, price: str, event_time: int,
                  trade_id: int) -> str:
    """One hostile text frame of `kind` on `stream` (`ids_jump_back` is the market's, not a frame)."""
    symbol = stream.partition("@")[0].upper() or "BTCUSDT"
    trade: dict[str, Any] = {"e": "aggTrade", "E": event_time, "s": symbol, "a": trade_id + 1, "p": price,
                             "q": "0.001", "f": trade_id + 1, "l": trade_id + 1, "T": event_time,
                             "m": True, "M": True}
    if kind == "time_400_digits":
        trade["E"] = 10**399
    elif kind == "time_far_future":
        trade["E"] = 10**30
    elif kind == "frame_12mb":
        trade["pad"] = "x" * HUGE_FRAME_BYTES
    elif kind == "price_negative":
        trade["p"] = "-1"
    elif kind == "price_zero":
        trade["p"] = "0"
    elif kind == "price_leading_zeros":
        trade["p"] = "00001.5"
    elif kind == "price_100k_digits":
        trade["p"] = "9" * 100_000
    elif kind == "symbol_unicode":
        trade["s"] = symbol + "ß"
    elif kind == "huge_trade_id":
        trade["a"] = trade["f"] = trade["l"] = 2**62
    else:
        raise ValueError(f"no hostile frame of kind {kind!r}")
    return encode_json({"stream": stream, "data": trade} if combined else trade)
