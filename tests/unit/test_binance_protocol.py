"""The Binance protocol layer against real captured traffic and against broken frames."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from pricefeed.exchange.protocol import (
    BookTicker,
    ControlReply,
    Kline,
    MalformedFrame,
    ServerShutdown,
    Ticker,
    Trade,
    Unused,
    parse_frame,
    stream_names,
)
from pricefeed.exchange.stream_plan import one_group
from pricefeed.pairs import PairCatalog
from tests.conftest import capture_frames, last_trade_prices, unicornfy_samples


@pytest.mark.parametrize("capture, expected", [
    ("cryptofeed-BINANCE.ws.1.0.txt", {Unused: 546, BookTicker: 412, Trade: 28, Kline: 17}),
    ("cryptofeed-BINANCE_US.ws.1.0.txt", {Unused: 336, BookTicker: 128, Trade: 11, Kline: 5}),
])
def test_every_captured_frame_parses_into_the_documented_message_types(capture, expected):
    kinds = Counter(type(message) for frame in capture_frames(capture) for message in parse_frame(frame))
    assert dict(kinds) == expected


def test_captured_trade_prices_are_the_exact_strings_the_exchange_sent():
    frames = capture_frames("cryptofeed-BINANCE.ws.1.0.txt")
    trades = [m for f in frames for m in parse_frame(f) if isinstance(m, Trade)]
    raw = [json.loads(f)["data"]["p"] for f in frames if json.loads(f)["data"].get("e") == "aggTrade"]
    assert [t.price for t in trades] == raw
    assert all(isinstance(t.price, str) for t in trades)
    assert {t.symbol: t.price for t in trades} == last_trade_prices("cryptofeed-BINANCE.ws.1.0.txt")


def test_unicornfy_samples_cover_every_stream_type_we_parse():
    # Later samples of a kind replace earlier ones here; the first ticker (row 3) is checked below.
    samples = unicornfy_samples()
    parsed = {sample["kind"]: parse_frame(sample["raw"]) for sample in samples}
    first_ticker = parse_frame(next(s["raw"] for s in samples if s["kind"] == "ticker"))[0]
    assert isinstance(first_ticker, Ticker)
    assert first_ticker.open == "9383.48000000" and first_ticker.close == "9318.48000000"
    trade = parsed["trade"][0]
    assert trade == Trade("BTCUSDT", "9302.00000000", 1592591955766, 343719861, "trade")
    agg = parsed["aggTrade"][0]
    assert agg == Trade("BTCUSDT", "9319.00000000", 1592584651517, 315753210, "aggTrade")
    assert isinstance(parsed["ticker"][0], Ticker)
    assert isinstance(parsed["miniTicker"][0], Ticker)
    array = parsed["!miniTicker@arr"]
    assert len(array) == 26 and all(isinstance(m, Ticker) for m in array)
    assert isinstance(parsed["kline"][0], Kline) and parsed["kline"][0].interval == "1m"
    assert parsed["depth"] == [Unused("depthUpdate")]


@pytest.mark.parametrize("frame", [
    '{"e":"serverShutdown","E":1750000000000}',
    '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1750000000000}}',
])
def test_server_shutdown_is_recognised_raw_and_combined(frame):
    assert parse_frame(frame) == [ServerShutdown(1750000000000)]


def test_control_replies_and_errors():
    assert parse_frame('{"result":null,"id":1}') == [ControlReply(1, result=None)]
    assert parse_frame('{"result":["btcusdt@aggTrade"],"id":3}') == [ControlReply(3, result=["btcusdt@aggTrade"])]
    assert parse_frame('{"code":2,"msg":"Invalid request","id":null}') == [
        ControlReply(None, error_code=2, error_message="Invalid request")]


def test_nested_control_errors_as_seen_on_the_live_service_are_replies_not_malformed():
    assert parse_frame('{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":1}') == [
        ControlReply(1, error_code=2, error_message="Invalid request: invalid stream")]
    with pytest.raises(MalformedFrame):
        parse_frame('{"error":{"msg":"no code"},"id":1}')


def test_symbols_with_letters_of_other_scripts_travel_percent_encoded_and_parse_back():
    catalog = PairCatalog(["币安人生/USDT"])
    url = one_group("wss://data-stream.binance.vision", catalog.pairs).url
    assert url.isascii() and "%E5%B8%81" in url and url.endswith("usdt@aggTrade/%E5%B8%81%E5%AE%89%E4%BA%BA%E7%94%9Fusdt@miniTicker")
    frame = json.dumps({"stream": "币安人生usdt@aggTrade", "data": {"e": "aggTrade", "E": 1750000000000,
                        "s": "币安人生USDT", "a": 5, "p": "0.01230000", "q": "1", "f": 1, "l": 1,
                        "T": 1750000000000, "m": True, "M": True}}, ensure_ascii=False)
    [trade] = parse_frame(frame)
    assert isinstance(trade, Trade)
    assert (trade.symbol, trade.price) == ("币安人生USDT", "0.01230000")
    pair = catalog.by_symbol(trade.symbol)
    assert pair is not None and pair.name == "币安人生/USDT"


def test_microsecond_timestamps_are_normalised_to_milliseconds():
    frame = '{"e":"aggTrade","E":1592584651517123,"s":"BTCUSDT","a":1,"p":"1.0","q":"1","f":1,"l":1,"T":1,"m":true,"M":true}'
    [trade] = parse_frame(frame)
    assert isinstance(trade, Trade) and trade.event_time == 1592584651517


@pytest.mark.parametrize("frame", [
    "not json",
    b"\xff\xfe garbage",
    "{}",
    "[1, 2]",
    '{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":43250.12}',          # a number, not a decimal string
    '{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"1e5"}',             # not plain decimal notation
    '{"e":"aggTrade","E":1,"a":1,"p":"1.0"}',                            # no symbol
    '{"e":"aggTrade","E":"soon","s":"BTCUSDT","a":1,"p":"1.0"}',        # time is not an integer
    '{"e":"kline","E":1,"s":"BTCUSDT","k":"x"}',
    '{"stream":5,"data":{}}',
    '"just a string"',
    "[" * 100000,
])
def test_malformed_frames_raise_malformed_frame(frame):
    with pytest.raises(MalformedFrame):
        parse_frame(frame)


def test_the_streams_of_a_pair_are_aggtrade_and_miniticker():
    catalog = PairCatalog(["BTC/USD", "ftm/usdt"])
    assert stream_names(catalog.pairs) == ["btcusdt@aggTrade", "btcusdt@miniTicker",
                                           "ftmusdt@aggTrade", "ftmusdt@miniTicker"]


def test_a_price_with_a_trailing_newline_is_malformed():
    with pytest.raises(MalformedFrame):
        parse_frame('{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"1.5\\n"}')
