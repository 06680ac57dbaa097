"""Property-based: the parser on fuzzed and truncated frames built from real Binance captures.

Whatever it is given, `parse_frame` either raises `MalformedFrame` (its own error
type, nothing else) or returns messages, and every price-carrying message it
returns meets the rules of `pricefeed.validation`.
"""
from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricefeed import validation
from pricefeed.exchange.protocol import BookTicker, Kline, MalformedFrame, Ticker, Trade, parse_frame
from tests.conftest import capture_frames, unicornfy_samples

DAY_MS = 86_400_000
CAPTURED = (capture_frames("cryptofeed-BINANCE.ws.1.0.txt")[:300] + capture_frames("cryptofeed-BINANCE_US.ws.1.0.txt")[:150]
            + [sample["raw"] for sample in unicornfy_samples()])
# Price-carrying frames are few in the depth-heavy captures: keep them all in the mix.
PRICED = [frame for frame in CAPTURED if re.search(r'"e":"(aggTrade|trade|24hrMiniTicker|24hrTicker|kline)"', frame)]
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40), st.just(10**399),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["-1", "0", "00001.5", "1e5", "9" * 5000, "BTCUSDTß", "0.00000000", "１２３", "1\n2"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _clock_of(frame: str) -> int:
    """The capture's own time: the window is checked around when the frame was sent."""
    match = re.search(r'"E":(\d{13})', frame)
    return int(match.group(1)) if match else 1_600_000_000_000


def assert_meets_the_rules(messages: list, now_ms: int) -> None:
    for message in messages:
        if isinstance(message, Trade):
            validation.price(message.price)
            validation.symbol(message.symbol)
            validation.identifier(message.trade_id)
            validation.event_time(message.event_time, DAY_MS, now_ms)
        elif isinstance(message, (Ticker, Kline)):
            prices = (message.close, message.open)
            for price in prices:
                validation.price(price)
            validation.symbol(message.symbol)
            validation.event_time(message.event_time, DAY_MS, now_ms)
        elif isinstance(message, BookTicker):
            validation.price(message.bid)
            validation.price(message.ask)
            validation.symbol(message.symbol)


def parse_checked(frame: str | bytes, now_ms: int) -> None:
    try:
        messages = parse_frame(frame, max_skew_ms=DAY_MS, now_ms=now_ms)
    except MalformedFrame as exc:
        assert exc.reason and isinstance(exc.reason, str)
        return
    assert_meets_the_rules(messages, now_ms)


def test_every_captured_frame_parses_or_is_rejected_by_its_own_error_only():
    for frame in CAPTURED:
        parse_checked(frame, _clock_of(frame))
    assert len(PRICED) >= 10


@PROPERTY
@given(frame=st.sampled_from(CAPTURED), cut=st.integers(min_value=0, max_value=4000))
def test_truncated_frames(frame, cut):
    parse_checked(frame[: cut % (len(frame) + 1)], _clock_of(frame))


@PROPERTY
@given(frame=st.sampled_from(PRICED), data=st.data())
def test_frames_with_one_field_replaced_by_a_hostile_value(frame, data):
    document = json.loads(frame)
    event = document["data"] if isinstance(document, dict) and "data" in document else document
    if isinstance(event, list):   # !miniTicker@arr: hurt one of its events
        event = event[data.draw(st.integers(0, len(event) - 1))]
    target = event["k"] if "k" in event and data.draw(st.booleans()) else event
    key = data.draw(st.sampled_from(sorted(target)))
    target[key] = data.draw(HOSTILE_VALUES)
    parse_checked(json.dumps(document, ensure_ascii=data.draw(st.booleans())), _clock_of(frame))


@PROPERTY
@given(frame=st.sampled_from(PRICED),
       edits=st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), st.integers(0, 255)),
                      min_size=1, max_size=8))
def test_frames_with_bytes_flipped(frame, edits):
    raw = bytearray(frame.encode())
    for position, value in edits:
        raw[position % len(raw)] = value
    parse_checked(bytes(raw), _clock_of(frame))


@PROPERTY
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.sampled_from(["e", "E", "s", "p", "a", "t", "c", "o", "k", "i",
                                                       "stream", "data", "id", "result", "u", "b"]),
                                      children, max_size=8),
                    max_leaves=20))
def test_arbitrary_json_documents_with_the_protocols_keys(document):
    parse_checked(json.dumps(document), 1_600_000_000_000)
