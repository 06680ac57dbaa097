"""Splitting the streams over exchange connections: every connection within Binance's limits."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricefeed.exchange.stream_plan import (
    MAX_TARGET_CHARS,
    PlanError,
    StreamGroup,
    encode_stream,
    one_group,
    pair_streams,
    plan_stream_groups,
)
from pricefeed.pairs import PairCatalog

BINANCE = "wss://stream.binance.com:9443"


def names_in(group: StreamGroup) -> list[str]:
    """The stream names the exchange reads from the group's URL (it percent-decodes them)."""
    return parse_qs(urlsplit(group.url).query)["streams"][0].split("/")


def unicode_pairs(count: int, letter: str = "é") -> list[tuple[str, list[str]]]:
    """Pairs whose symbols carry non-ASCII letters, as the catalogue may list them since 2025-12."""
    items = []
    for index in range(count):
        symbol = f"{letter * 6}{index:04d}usdt"
        items.append((f"{letter * 6}{index:04d}/USDT", [f"{symbol}@aggTrade", f"{symbol}@miniTicker"]))
    return items


def test_a_few_pairs_make_one_connection_with_todays_url():
    catalog = PairCatalog(["BTC/USD", "ftm/usdt"])
    (group,) = plan_stream_groups(BINANCE, pair_streams(catalog.pairs))
    assert group.url == ("wss://stream.binance.com:9443/stream?streams="
                         "btcusdt@aggTrade/btcusdt@miniTicker/ftmusdt@aggTrade/ftmusdt@miniTicker")
    assert group.pairs == ("BTC/USD", "FTM/USDT")
    assert group.target == "/stream?streams=" + "/".join(group.streams)
    assert one_group(BINANCE, catalog.pairs) == group


def test_a_base_that_names_the_path_is_trimmed_not_doubled():
    catalog = PairCatalog(["BTC/USD"])
    (group,) = plan_stream_groups("wss://data-stream.binance.vision/stream/", pair_streams(catalog.pairs))
    assert group.url.startswith("wss://data-stream.binance.vision/stream?streams=btcusdt@aggTrade")
    (group,) = plan_stream_groups("ws://127.0.0.1:9000/ws", pair_streams(catalog.pairs))
    assert group.url.startswith("ws://127.0.0.1:9000/stream?streams=")
    # A proxy's path prefix is part of the target the exchange (or proxy) measures.
    (group,) = plan_stream_groups("wss://proxy.example/binance/ws", pair_streams(catalog.pairs))
    assert group.target.startswith("/binance/stream?streams=")


def test_500_pairs_split_into_connections_each_within_both_limits_in_order():
    catalog = PairCatalog([f"P{index:03d}/USDT" for index in range(500)])
    groups = plan_stream_groups(BINANCE, pair_streams(catalog.pairs))
    assert len(groups) == 3      # ~39 characters a pair: about 205 pairs per 8,000-character target
    for group in groups:
        assert group.target_length <= MAX_TARGET_CHARS
        assert len(group.streams) <= 1024
        assert names_in(group) == list(group.streams)
    # Every pair exactly once, in the configured order, both its streams on its connection.
    assert [pair for group in groups for pair in group.pairs] == [pair.name for pair in catalog.pairs]
    for group in groups:
        assert len(group.streams) == 2 * len(group.pairs)
    # As few connections as the target allows, evenly loaded (not 210/210/80).
    streams_length = sum(len(name) + 1 for group in groups for name in group.streams)
    assert len(groups) == -(-streams_length // (MAX_TARGET_CHARS - len("/stream?streams=")))
    assert max(len(g.pairs) for g in groups) - min(len(g.pairs) for g in groups) <= 2


def fewest_connections(items, max_target: int, max_streams: int = 1024) -> int:
    """Reference: filling each connection before the next (optimal for an in-order split)."""
    count, length, streams = 0, None, 0
    for _, names in items:
        cost = sum(len(encode_stream(name)) + 1 for name in names)
        if length is None or length + cost > max_target or streams + len(names) > max_streams:
            count, length, streams = count + 1, len("/stream?streams=") - 1, 0
        length += cost
        streams += len(names)
    return count


def test_an_even_split_never_needs_more_connections_than_filling_each():
    # Pairs of very different lengths: where an even split cannot keep the count, each is filled.
    items = [(f"p{index}", [("x" * (150 if index % 7 == 0 else 5)) + f"{index}@t"]) for index in range(400)]
    for limit in (300, 450, 600, 1000, 3000):
        groups = plan_stream_groups(BINANCE, items, max_target_chars=limit)
        assert len(groups) == fewest_connections(items, limit)
        assert all(group.target_length <= limit for group in groups)
        assert [pair for group in groups for pair in group.pairs] == [pair for pair, _ in items]


def test_the_stream_cap_splits_when_names_are_short():
    items = [(f"p{index}", [f"s{index}@a", f"s{index}@b"]) for index in range(1500)]
    groups = plan_stream_groups(BINANCE, items, max_target_chars=10**6)
    assert len(groups) == 3 and all(len(group.streams) <= 1024 for group in groups)
    assert sum(len(group.streams) for group in groups) == 3000


def test_a_target_of_exactly_the_limit_fits_and_one_more_character_does_not():
    fixed = len("/stream?streams=")
    name = "x" * (100 - fixed)
    (group,) = plan_stream_groups(BINANCE, [("a", [name])], max_target_chars=100)
    assert group.target_length == 100
    groups = plan_stream_groups(BINANCE, [("a", [name[:-1]]), ("b", ["y"])], max_target_chars=100)
    assert [g.target_length for g in groups] == [99, fixed + 1]
    with pytest.raises(PlanError):
        plan_stream_groups(BINANCE, [("a", [name + "x"])], max_target_chars=100)


def test_no_pairs_no_connection():
    assert plan_stream_groups(BINANCE, []) == ()


def test_non_ascii_symbols_count_as_sent_percent_encoded():
    items = unicode_pairs(400)
    groups = plan_stream_groups(BINANCE, items)
    # "é" is six characters on the wire (%C3%A9): far fewer pairs fit than the string length suggests.
    assert "%C3%A9%C3%A9" in groups[0].url and "é" not in groups[0].url
    unencoded = sum(len(name) + 1 for _, names in items for name in names)
    assert len(groups) > -(-unencoded // MAX_TARGET_CHARS)
    for group in groups:
        assert group.target_length <= MAX_TARGET_CHARS
        assert group.target.isascii()
        assert names_in(group) == list(group.streams)     # the exchange decodes them back exactly
    assert [pair for group in groups for pair in group.pairs] == [pair for pair, _ in items]


def test_encoding_keeps_the_characters_binance_names_use_and_encodes_the_separator():
    assert encode_stream("btcusdt@aggTrade") == "btcusdt@aggTrade"
    assert encode_stream("!miniTicker@arr") == "!miniTicker@arr"
    assert encode_stream("btcusdt@kline_1m") == "btcusdt@kline_1m"
    assert encode_stream("a/b") == "a%2Fb"
    assert encode_stream("币安usdt@aggTrade") == "%E5%B8%81%E5%AE%89usdt@aggTrade"


symbols = st.text(st.characters(categories=("Ll", "Lo", "Nd"), max_codepoint=0x10FFFF), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(st.lists(symbols, min_size=1, max_size=700, unique=True), st.integers(200, 8000), st.integers(2, 1024))
def test_any_symbols_any_limits_every_connection_fits_and_every_pair_is_planned_once(names, target, streams):
    items = [(name, [f"{name}@aggTrade", f"{name}@miniTicker"]) for name in names]
    try:
        groups = plan_stream_groups(BINANCE, items, max_streams=streams, max_target_chars=target)
    except PlanError:
        # Only a pair that alone is too long for one connection may be refused.
        assert any(len("/stream?streams=") + len(encode_stream(a)) + 1 + len(encode_stream(b)) > target
                   for _, (a, b) in items)
        return
    assert [pair for group in groups for pair in group.pairs] == names
    assert len(groups) == fewest_connections(items, target, streams)
    for group in groups:
        assert group.target_length <= target and len(group.streams) <= streams
        assert names_in(group) == list(group.streams)
