"""The rules every price must meet, wherever it enters: the exchange frame, the REST body, Redis.

"Parse, don't validate": each rule turns untrusted input into a checked value or
raises `Rejected` with a short, stable `reason` that operators see counted in
/health. The exchange side and the bus both call these, so a tick that one
accepts the other accepts too.

- price: a positive, finite decimal string — at most 20 integer and 18 fraction
  digits, no sign, no exponent, no leading zeros (`00001.5`), value > 0;
- symbol: 1-20 upper-case letters and digits as sent — ASCII, or the Unicode letters the
  exchange's catalogue lists (since 2025-12), never lower-case, never a compatibility form
  (full-width `ＢＴＣ`), never case-folded (`"ß".upper()` is `"SS"`);
- event time: ms since the epoch within `max_skew_ms` of the local clock;
- ids (trade ids, epochs, sequence numbers): non-negative and below 2**63.
"""
from __future__ import annotations

import re
import time
import unicodedata

MAX_INTEGER_DIGITS = 20
MAX_FRACTION_DIGITS = 18
MAX_SYMBOL_LENGTH = 20
MAX_ID = 2**63 - 1
DEFAULT_MAX_CLOCK_SKEW_MS = 24 * 3600 * 1000

_PRICE = re.compile(r"(0|[1-9][0-9]{0,%d})(\.[0-9]{1,%d})?" % (MAX_INTEGER_DIGITS - 1, MAX_FRACTION_DIGITS),
                    re.ASCII)
_MAX_PRICE_LENGTH = MAX_INTEGER_DIGITS + 1 + MAX_FRACTION_DIGITS


class Rejected(ValueError):
    """An input that breaks one of the rules; `reason` names which (e.g. `price_shape`)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def price(value: object, field: str = "price") -> str:
    """The decimal string itself if it is a valid price; Rejected otherwise."""
    if not isinstance(value, str):
        raise Rejected("price_type", f"`{field}` is a {type(value).__name__}, not a decimal string")
    if len(value) > _MAX_PRICE_LENGTH:
        raise Rejected("price_too_long", f"`{field}` has {len(value)} characters")
    if not _PRICE.fullmatch(value):
        raise Rejected("price_shape", f"`{field}`={value[:40]!r}")
    if value.strip("0.") == "":
        raise Rejected("price_not_positive", f"`{field}`={value!r}")
    return value


def optional_price(value: object, field: str) -> str | None:
    return None if value is None else price(value, field)


def symbol(value: object) -> str:
    """An exchange symbol exactly as sent: upper-case letters (Unicode ones included) and digits."""
    if not isinstance(value, str):
        raise Rejected("symbol_type", f"symbol is a {type(value).__name__}")
    if not asset_shaped(value, MAX_SYMBOL_LENGTH):
        raise Rejected("symbol_shape", f"symbol {value[:40]!r}")
    return value


def asset_shaped(text: str, max_length: int) -> bool:
    """1..max_length characters, each an ASCII upper-case letter or digit, or a non-ASCII letter
    that is not lower-case and is its own NFKC form (so `ＢＴＣ` never passes for BTC)."""
    return 0 < len(text) <= max_length and all(_symbol_character(c) for c in text)


def _symbol_character(c: str) -> bool:
    if c.isascii():
        return "A" <= c <= "Z" or "0" <= c <= "9"
    return c.isalpha() and not c.islower() and unicodedata.normalize("NFKC", c) == c


def identifier(value: object, field: str = "id") -> int:
    """A non-negative integer that fits in 63 bits (a trade id, an epoch, a sequence number)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise Rejected("id_type", f"`{field}` is not an integer")
    if not 0 <= value <= MAX_ID:
        raise Rejected("id_range", f"`{field}` does not fit in 63 bits")
    return value


def event_time(value: object, max_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS, now_ms: int | None = None,
               field: str = "E") -> int:
    """An event time in ms within `max_skew_ms` of the local clock (past or future)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise Rejected("time_type", f"`{field}` is not an integer")
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms  # noqa: F811
    if not now - max_skew_ms <= value <= now + max_skew_ms:
        # No repr of a 400-digit number in the detail: its length says enough.
        shown = str(value) if abs(value) < 10**20 else f"a {len(str(abs(value)))}-digit number"
        raise Rejected("time_out_of_window", f"`{field}`={shown} is more than {max_skew_ms} ms from now")
    return value


def now_ms() -> int:
    """The local wall clock in ms, the reference of the event-time window."""
    return time.time_ns() // 1_000_000
