"""The price, symbol, time and id rules, at the edge (exchange frames) and at the bus (ticks from Redis)."""
from __future__ import annotations

import json
import time

import pytest

from pricefeed import validation
from pricefeed.config import Config, ConfigError
from pricefeed.exchange.protocol import MalformedFrame, RejectedEvent, Ticker, Trade, parse_frame
from pricefeed.pairs import PairCatalog, PairError, parse_pair
from pricefeed.simulator.hostile import HOSTILE_KINDS, hostile_frame
from pricefeed.ticks import PriceTick
from pricefeed.validation import Rejected

NOW = 1_750_000_000_000
DAY = 86_400_000


@pytest.mark.parametrize("price", ["1", "0.5", "43250.12000000", "0.00000001", "9" * 20 + "." + "9" * 18, "10"])
def test_well_formed_positive_prices_are_kept_exactly(price):
    assert validation.price(price) == price


@pytest.mark.parametrize("price, reason", [
    ("-1", "price_shape"), ("0", "price_not_positive"), ("0.00000000", "price_not_positive"),
    ("00001.5", "price_shape"), ("1e5", "price_shape"), ("+1", "price_shape"), ("1.", "price_shape"),
    (".5", "price_shape"), ("NaN", "price_shape"), ("Infinity", "price_shape"), (" 1", "price_shape"),
    ("1\n", "price_shape"), ("١٢٣", "price_shape"), ("9" * 21, "price_shape"),
    ("1." + "0" * 19, "price_shape"), ("9" * 100_000, "price_too_long"), (1.5, "price_type"), (None, "price_type"),
])
def test_prices_outside_the_bounded_shape_are_rejected_with_their_reason(price, reason):
    with pytest.raises(Rejected) as caught:
        validation.price(price)
    assert caught.value.reason == reason


@pytest.mark.parametrize("symbol", ["BTCUSDTß", "btcusdt", "BTC-USDT", "", "A" * 21, "BTCUSDT\n", "ＢＴＣ",
                                    "BTC USDT", "ωUSDT", "BTC\u200bUSDT", "١٢٣USDT"])
def test_symbols_must_be_upper_case_letters_and_digits_as_sent(symbol):
    with pytest.raises(Rejected):
        validation.symbol(symbol)


@pytest.mark.parametrize("symbol", ["BTCUSDT", "1000SATSFDUSD", "币安人生USDT", "ΩUSDT"])
def test_symbols_with_letters_of_other_scripts_pass_as_the_catalogue_lists_them(symbol):
    assert validation.symbol(symbol) == symbol


def test_event_times_must_lie_within_the_window_of_the_local_clock():
    assert validation.event_time(NOW + DAY, DAY, NOW) == NOW + DAY
    for value in (NOW + DAY + 1, NOW - DAY - 1, 10**30, 10**399, -1):
        with pytest.raises(Rejected) as caught:
            validation.event_time(value, DAY, NOW)
        assert caught.value.reason == "time_out_of_window"
        assert len(str(caught.value)) < 200, "a 400-digit number is never echoed"


def test_ids_must_fit_in_63_bits():
    assert validation.identifier(2**63 - 1) == 2**63 - 1
    for value in (2**63, -1, True, "1"):
        with pytest.raises(Rejected):
            validation.identifier(value)


@pytest.mark.parametrize("kind, reason", [
    ("time_400_digits", "time_out_of_window"), ("time_far_future", "time_out_of_window"),
    ("price_negative", "price_shape"), ("price_zero", "price_not_positive"),
    ("price_leading_zeros", "price_shape"), ("price_100k_digits", "price_too_long"),
    ("symbol_unicode", "symbol_shape"),
])
def test_each_hostile_frame_of_the_simulator_is_rejected_by_the_parser_with_its_reason(kind, reason):
    frame = hostile_frame(kind, "btcusdt@aggTrade", True, "43250.12", NOW, 100)
    with pytest.raises(MalformedFrame) as caught:
        parse_frame(frame, max_skew_ms=DAY, now_ms=NOW)
    assert caught.value.reason == reason


def test_a_huge_but_valid_trade_id_parses():
    frame = hostile_frame("huge_trade_id", "btcusdt@aggTrade", True, "43250.12", NOW, 100)
    [trade] = parse_frame(frame, max_skew_ms=DAY, now_ms=NOW)
    assert isinstance(trade, Trade) and trade.trade_id == 2**62


def test_every_hostile_kind_is_known_to_the_simulator():
    assert len(HOSTILE_KINDS) == 10 and "frame_12mb" in HOSTILE_KINDS and "ids_jump_back" in HOSTILE_KINDS


def test_one_bad_ticker_in_an_array_frame_is_rejected_and_the_others_kept():
    good = {"e": "24hrMiniTicker", "E": NOW, "s": "ETHUSDT", "c": "2000.1", "o": "1990.0"}
    bad = dict(good, s="BTCUSDT", c="-5")
    messages = parse_frame(json.dumps({"stream": "!miniTicker@arr", "data": [bad, good]}), max_skew_ms=DAY,
                           now_ms=NOW)
    assert messages == [RejectedEvent("price_shape", "`c`='-5'"), Ticker("ETHUSDT", "2000.1", "1990.0", NOW)]


def test_ticks_read_from_the_bus_are_checked_like_the_exchanges():
    now = int(time.time() * 1000)
    good = PriceTick("BTC/USD", "BTCUSDT", "43250.12", now, "binance", "43000.0", 3, 9)
    assert PriceTick.from_json(good.to_json(), DAY) == good
    bad_fields: dict[str, dict[str, object]] = {
        "price_shape": dict(price="-1"), "symbol_shape": dict(symbol="BTCUSDTß"),
        "time_out_of_window": dict(ts=10**399), "id_range": dict(seq=2**64), "pair_shape": dict(pair="btc/usd\n"),
    }
    for reason, change in bad_fields.items():
        fields: dict[str, object] = {"pair": good.pair, "symbol": good.symbol, "price": good.price, "ts": good.ts,
                  "source": good.source, "open24h": good.open24h, "epoch": good.epoch, "seq": good.seq, **change}
        wire = json.dumps(list(fields.values()))
        with pytest.raises(Rejected) as caught:
            PriceTick.from_json(wire, DAY)
        assert caught.value.reason in (reason, "tick_too_long")


def test_pairs_are_not_case_folded_from_unicode():
    with pytest.raises(PairError):
        parse_pair("btcß/usd")
    assert PairCatalog(["BTC/USD"]).by_symbol("BTCUSDTß") is None
    assert PairCatalog(["BTC/USD"]).by_symbol("BTCUSDT") is not None


@pytest.mark.parametrize("key, url", [("PRICEFEED_UPSTREAM_URL", "ws://user:secret@stream.example.com:9443"),
                                      ("PRICEFEED_REST_URL", "http://user:secret@api.example.com")])
def test_plaintext_upstreams_off_loopback_are_refused_without_echoing_credentials(key, url):
    with pytest.raises(ConfigError) as caught:
        Config.load({key: url}, {})
    message = str(caught.value)
    assert key in message and "PRICEFEED_ALLOW_INSECURE_UPSTREAM" in message and "secret" not in message
    assert Config.load({key: url, "PRICEFEED_ALLOW_INSECURE_UPSTREAM": "true"}, {})
    assert Config.load({"PRICEFEED_UPSTREAM_URL": "ws://127.0.0.1:9900", "PRICEFEED_REST_URL": "http://[::1]:1"}, {})
