"""The exchange's catalogue, parsed and matched against the configured pairs (pure: no I/O)."""
from __future__ import annotations

import json

import pytest

from pricefeed.exchange.access import AccessRefusals
from pricefeed.exchange.catalogue import HALTED, LISTED, UNLISTED, closest_listed, parse_exchange_info, stand
from pricefeed.exchange.rest_request import error_reply
from pricefeed.pairs import PairCatalog, parse_pair
from pricefeed.validation import Rejected


def exchange_info(*symbols: tuple[str, str, str, str | int], limits=None) -> bytes:
    """exchangeInfo with these (symbol, base, quote, status) rows; a test may give a status of the wrong type."""
    return json.dumps({
        "timezone": "UTC",
        "rateLimits": limits if limits is not None else [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000}],
        "symbols": [{"symbol": s, "status": st, "baseAsset": b, "quoteAsset": q, "filters": []}
                    for s, b, q, st in symbols],
    }).encode()


BINANCE_COM = parse_exchange_info(exchange_info(
    ("BTCUSDT", "BTC", "USDT", "TRADING"), ("BTCUSDC", "BTC", "USDC", "TRADING"),
    ("ETHUSDT", "ETH", "USDT", "TRADING"), ("XRPUSDT", "XRP", "USDT", "HALT"),
    ("SOLUSDT", "SOL", "USDT", "TRADING"), ("币安人生USDT", "币安人生", "USDT", "TRADING")))
BINANCE_US = parse_exchange_info(exchange_info(
    ("BTCUSD", "BTC", "USD", "TRADING"), ("BTCUSDT", "BTC", "USDT", "TRADING"), ("ETHUSDT", "ETH", "USDT", "TRADING")))


def standings(names: list[str], catalogue) -> dict:
    return {name: standing for name, (_, standing) in stand([parse_pair(n) for n in names], catalogue, "USDT").items()}


def test_a_pair_listed_under_its_own_name_is_that_symbol_and_only_an_unlisted_one_is_aliased():
    us = standings(["BTC/USD", "ETH/USD"], BINANCE_US)
    assert (us["BTC/USD"].listing, us["BTC/USD"].symbol, us["BTC/USD"].quote) == (LISTED, "BTCUSD", None)
    assert (us["ETH/USD"].listing, us["ETH/USD"].symbol, us["ETH/USD"].quote) == (LISTED, "ETHUSDT", "USDT")
    com = standings(["BTC/USD"], BINANCE_COM)
    assert (com["BTC/USD"].symbol, com["BTC/USD"].quote) == ("BTCUSDT", "USDT")


def test_unlisted_and_halted_pairs_are_named_so():
    com = standings(["DOGE/USD", "XRP/USDT", "SOL/EUR", "BTC/USDT"], BINANCE_COM)
    assert (com["DOGE/USD"].listing, com["DOGE/USD"].symbol) == (UNLISTED, None)
    assert (com["SOL/EUR"].listing, com["SOL/EUR"].symbol) == (UNLISTED, None)
    assert (com["XRP/USDT"].listing, com["XRP/USDT"].exchange_status) == (HALTED, "HALT")
    assert com["BTC/USDT"].listing == LISTED and com["BTC/USDT"].quote is None


def test_the_closest_listed_pairs_are_the_same_base_under_the_usd_quotes_first():
    assert closest_listed(parse_pair("BTC/USD"), BINANCE_COM) == ["BTC/USDT", "BTC/USDC"]
    assert closest_listed(parse_pair("SOL/EUR"), BINANCE_COM) == ["SOL/USDT"]
    assert closest_listed(parse_pair("XRP/USDC"), BINANCE_COM) == []      # XRPUSDT is halted: not offered
    assert closest_listed(parse_pair("BTCC/USDT"), BINANCE_COM) == ["BTC/USDT"]   # spelt alike


def test_the_catalog_adopts_the_exchange_names_and_leaves_unlisted_pairs_out_of_the_subscription():
    catalog = PairCatalog(["BTC/USD", "ETH/USD", "DOGE/USD"])
    assert [p.symbol for p in catalog.pairs] == ["BTCUSDT", "ETHUSDT", "DOGEUSDT"]   # the guess, until read
    traded = {name: pair for name, (pair, _) in stand(catalog.configured, BINANCE_US, "USDT").items()}
    assert catalog.adopt(traded) is True
    assert [p.symbol for p in catalog.pairs] == ["BTCUSD", "ETHUSDT"]
    btc = catalog.by_symbol("BTCUSD")
    assert btc is not None and btc.name == "BTC/USD" and catalog.by_symbol("BTCUSDT") is None
    assert [p.name for p in catalog.resolve_list(None, 10)] == ["BTC/USD", "ETH/USD", "DOGE/USD"]
    assert catalog.resolve("doge/usd").name == "DOGE/USD"       # still served by name: as unlisted
    assert catalog.adopt(traded) is False                        # the same again: nothing to resubscribe


def test_weight_limit_comes_from_rate_limits_per_minute():
    assert BINANCE_COM.weight_limit_per_minute == 1200
    hourly = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "HOUR", "intervalNum": 1, "limit": 60000}]
    assert parse_exchange_info(exchange_info(limits=hourly)).weight_limit_per_minute == 1000
    assert parse_exchange_info(exchange_info(limits=[])).weight_limit_per_minute is None


@pytest.mark.parametrize("body", [b"", b"[]", b'{"symbols": {}}', b"{", b'{"code":-1121,"msg":"Invalid symbol."}'])
def test_an_unreadable_catalogue_is_rejected_whole(body):
    with pytest.raises(Rejected):
        parse_exchange_info(body)


def test_rows_that_break_the_rules_are_left_out_and_unicode_symbols_kept():
    catalogue = parse_exchange_info(exchange_info(
        ("btcusdt", "BTC", "USDT", "TRADING"), ("ＢＴＣUSDT", "ＢＴＣ", "USDT", "TRADING"),
        ("X" * 21, "X", "USDT", "TRADING"), ("ETHUSDT", "ETH", "USDT", 7),
        ("币安人生USDT", "币安人生", "USDT", "TRADING")))
    assert list(catalogue.symbols) == ["币安人生USDT"]


def test_both_error_shapes_are_understood():
    assert error_reply(b'{"code":-1121,"msg":"Invalid symbol."}') == (-1121, "Invalid symbol.")
    assert error_reply({"error": {"code": 2, "msg": "Invalid request"}, "id": 1}) == (2, "Invalid request")
    assert error_reply(b"<html>403</html>") is None and error_reply({"code": "2"}) is None


def test_a_refusal_is_one_reason_until_every_caller_that_saw_it_is_answered():
    now = [0.0]
    access = AccessRefusals(60.0, clock=lambda: now[0])
    assert access.refused(451, "handshake", "wss://stream.binance.com:9443/stream?streams=x") == 60.0
    access.refused(451, "rest", "https://api.binance.com/api/v3/ticker/24hr")
    assert access.current() == "region_not_served"
    access.answered("handshake")
    assert access.current() == "region_not_served"       # REST still saw it
    now[0] += 181                                         # REST stopped asking: its sighting lapses
    assert access.current() is None
    access.refused(403, "catalogue", "https://api.binance.com/api/v3/exchangeInfo")
    assert access.status()["reason"] == "blocked_by_exchange_firewall" and access.status()["http_status"] == 403
