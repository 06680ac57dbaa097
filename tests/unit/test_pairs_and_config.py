"""Pair syntax, the served catalog, and configuration validation."""
from __future__ import annotations

import pytest

from pricefeed.config import SETTINGS, Config, ConfigError
from pricefeed.pairs import PairCatalog, PairError, parse_pair


def test_pairs_are_case_insensitive_and_usd_maps_to_the_stable_quote():
    pair = parse_pair(" btc/usd ")
    assert (pair.name, pair.symbol, pair.stream_symbol) == ("BTC/USD", "BTCUSDT", "btcusdt")
    assert parse_pair("ETH/USD", stable_quote="USDC").symbol == "ETHUSDC"
    assert parse_pair("XMR/BTC").symbol == "XMRBTC"


@pytest.mark.parametrize("text", ["BTCUSD", "BTC/", "/USD", "BTC/USD/X", "BT C/USD", "<script>/USD", "ω/USD",
                                  "ＢＴＣ/USD", "BTCß/USD"])
def test_malformed_pairs_are_refused(text):
    with pytest.raises(PairError) as info:
        parse_pair(text)
    assert info.value.error == "malformed_pair"


def test_pairs_with_unicode_letters_are_taken_as_the_exchange_lists_them():
    pair = parse_pair("币安人生/usdt")
    assert (pair.name, pair.symbol, pair.stream_symbol) == ("币安人生/USDT", "币安人生USDT", "币安人生usdt")
    assert PairCatalog(["币安人生/USDT"]).by_symbol("币安人生USDT") == pair


def test_catalog_resolves_served_pairs_and_refuses_others():
    catalog = PairCatalog(["BTC/USD", "ETH/USD"])
    assert catalog.resolve("btc/usdt").name == "BTC/USD"   # the exchange's own quote names the same market
    assert catalog.resolve_list(None, 10) == catalog.pairs
    assert [p.name for p in catalog.resolve_list("eth/usd,BTC/USD,eth/usd", 10)] == ["ETH/USD", "BTC/USD"]
    for text, error in [("", "malformed_pairs"), (" ", "malformed_pairs"), ("BTC/USD,", "malformed_pairs"),
                        ("DOGE/USD", "unknown_pair"), ("BTC/USD,ETH/USD", "too_many_pairs")]:
        with pytest.raises(PairError) as info:
            catalog.resolve_list(text, 1 if error == "too_many_pairs" else 10)
        assert info.value.error == error


def test_defaults_load_without_any_environment():
    config = Config.load({}, environ={})
    assert config.cluster.redis_url is None
    # Binance's hosts for public market data (README, "Pointing it at an exchange"), not its trading hosts.
    assert config.upstream.upstream_url == "wss://data-stream.binance.vision"
    assert config.upstream.rest_url == "https://data-api.binance.vision"
    # A region block or firewall refusal is asked again about once a minute; the catalogue every 5 minutes.
    assert (config.upstream.refused_retry_interval, config.upstream.catalogue_refresh) == (60.0, 300.0)
    assert config.endpoint.url_prefix == "/api/market-data"


def test_app_config_wins_over_environment_and_accepts_typed_values():
    config = Config.load({"PRICEFEED_PAIRS": ["BTC/USD"], "PRICEFEED_STALE_AFTER": 3},
                         environ={"PRICEFEED_PAIRS": "ETH/USD", "PRICEFEED_DASHBOARD": "false"})
    assert config.upstream.pairs == ("BTC/USD",)
    assert config.delivery.stale_after == 3.0
    assert config.endpoint.dashboard is False


@pytest.mark.parametrize("name, value", [
    ("PRICEFEED_UPSTREAM_URL", "http://example.com"),
    ("PRICEFEED_REDIS_URL", "mysql://x"),
    ("PRICEFEED_STALE_AFTER", "soon"),
    ("PRICEFEED_STALE_AFTER", "-1"),
    ("PRICEFEED_MAX_CLIENTS", "0"),
    ("PRICEFEED_DASHBOARD", "maybe"),
    ("PRICEFEED_URL_PREFIX", "api/"),
    ("PRICEFEED_PAIRS", " , "),
    ("PRICEFEED_UPSTREAM_MAX_ATTEMPTS_PER_5MIN", "301"),
    ("PRICEFEED_HEARTBEAT_INTERVAL", "nan"),
    ("PRICEFEED_PAIRS", "BTCUSD"),
    ("PRICEFEED_PAIRS", "BTC/USD,btc/usdt"),
    ("PRICEFEED_UPSTREAM_MAX_STREAMS_PER_CONNECTION", "1025"),
    ("PRICEFEED_UPSTREAM_MAX_TARGET_LENGTH", "8001"),
    ("PRICEFEED_STABLE_QUOTE", ""),
    ("PRICEFEED_STABLE_QUOTE", "US-T"),
    ("PRICEFEED_MIN_UPDATE_INTERVAL", "20"),
])
def test_invalid_values_stop_startup_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as info:
        Config.load({}, environ={name: value})
    assert name in str(info.value)


def test_any_number_of_pairs_is_accepted_they_are_split_over_connections():
    pairs = ",".join(f"A{i}/USD" for i in range(3000))
    assert len(Config.load({}, environ={"PRICEFEED_PAIRS": pairs}).upstream.pairs) == 3000


def test_a_unix_socket_redis_url_is_accepted():
    assert Config.load({}, environ={"PRICEFEED_REDIS_URL": "unix:///run/redis.sock"}).cluster.redis_url


def test_public_view_hides_the_redis_password():
    config = Config.load({}, environ={"PRICEFEED_REDIS_URL": "redis://user:s3cret@127.0.0.1:6379/0"})
    assert "s3cret" not in str(config.public())


def test_every_setting_is_documented_with_a_default():
    assert len(SETTINGS) >= 20 and all(declared.variable.startswith("PRICEFEED_") and declared.doc
                                       for declared in SETTINGS)
