"""PRICEFEED_REDIS_URL's Sentinel form, parsed strictly, its password never shown."""
from __future__ import annotations

import pytest

from pricefeed.config import SETTINGS, Config, ConfigError
from pricefeed.redis_urls import SentinelURL, parse_sentinel_url


def load(url: str, **extra: str) -> Config:
    return Config.load({}, environ={"PRICEFEED_REDIS_URL": url, **extra})


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database():
    assert parse_sentinel_url("redis+sentinel://app:p%40ss@10.0.0.1:26379,10.0.0.2,[::1]:26380/prices/3") == \
        SentinelURL(sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)), master="prices",
                    db=3, username="app", password="p@ss")
    assert parse_sentinel_url("redis+sentinel://s1:26379/prices") == SentinelURL((("s1", 26379),), "prices")
    assert parse_sentinel_url("redis+sentinel://secret@s1/prices").password == "secret"


@pytest.mark.parametrize("url", [
    "redis+sentinel://s1:26379",                 # no master name
    "redis+sentinel://s1:26379/",                # empty master name
    "redis+sentinel://s1:26379/m/16",            # database out of range
    "redis+sentinel://s1:26379/m/x",
    "redis+sentinel://s1:26379/m/0/extra",
    "redis+sentinel://s1:0/m",
    "redis+sentinel://s1:port/m",
    "redis+sentinel://s1:26379,/m",              # an empty host in the list
    "redis+sentinel://s1:26379/m?ssl=true",      # options are not silently ignored
    "redis+sentinel://s1/ma ster",
    "redis+sentinel:///m",
])
def test_a_malformed_sentinel_url_stops_startup_naming_the_variable(url):
    with pytest.raises(ConfigError) as info:
        load(url)
    assert "PRICEFEED_REDIS_URL" in str(info.value)


def test_an_error_about_a_redis_url_never_echoes_its_password():
    for url in ("redis+sentinel://user:hunter2@s1:99999/m", "mysql://user:hunter2@db/x"):
        with pytest.raises(ConfigError) as info:
            load(url)
        assert "hunter2" not in str(info.value)


def test_public_view_hides_the_master_and_the_sentinel_passwords():
    config = load("redis+sentinel://user:hunter2@s1:26379,s2:26379/m/0",
                  PRICEFEED_REDIS_SENTINEL_PASSWORD="sentinel-secret", PRICEFEED_REDIS_SENTINEL_USERNAME="sen")
    shown = config.public()
    assert "hunter2" not in str(shown) and "sentinel-secret" not in str(shown)
    assert "redis_sentinel_password" not in shown
    assert shown["redis_url"] == "redis+sentinel://s1:26379,s2:26379/m/0"   # scheme://hosts/master/db only
    assert config.cluster.redis_sentinel_username == "sen"


def test_leader_yield_after_defaults_to_thirty_seconds_and_zero_turns_it_off():
    assert Config.load({}, environ={}).cluster.leader_yield_after == 30.0
    assert Config.load({}, environ={"PRICEFEED_LEADER_YIELD_AFTER": "0"}).cluster.leader_yield_after == 0
    with pytest.raises(ConfigError):
        Config.load({}, environ={"PRICEFEED_LEADER_YIELD_AFTER": "-1"})


def test_every_new_setting_is_documented():
    names = {declared.variable for declared in SETTINGS if declared.doc}
    assert {"PRICEFEED_REDIS_SENTINEL_USERNAME", "PRICEFEED_REDIS_SENTINEL_PASSWORD",
            "PRICEFEED_LEADER_YIELD_AFTER"} <= names
