"""Every declaration holds: its default parses and lies within its bounds, a value out of bounds
is refused naming the variable, and app.config wins over the environment."""
from __future__ import annotations

import dataclasses

import pytest

from pricefeed.config import GROUPS, SETTINGS, Config, ConfigError
from pricefeed.settings.reference import default_text


def _as_text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.mark.parametrize("declared", [d for d in SETTINGS if d.default is not None], ids=lambda d: d.variable)
def test_a_default_written_out_parses_back_to_itself_within_its_bounds(declared):
    parsed = declared.value_of(_as_text(declared.default))
    assert parsed == declared.default
    if declared.minimum is not None:
        assert declared.minimum <= declared.default
    if declared.maximum is not None:
        assert declared.default <= declared.maximum


def test_the_defaults_make_a_valid_config_equal_to_loading_nothing():
    assert Config() == Config.load({}, environ={})
    assert all(getattr(Config(), group.ATTRIBUTE) == group() for group in GROUPS)


BOUNDED = [d for d in SETTINGS if d.minimum is not None or d.maximum is not None]


@pytest.mark.parametrize("declared", BOUNDED, ids=lambda d: d.variable)
def test_a_value_out_of_bounds_is_a_config_error_naming_the_variable(declared):
    outside = []
    if declared.minimum is not None:
        outside.append(declared.minimum - 1 if declared.parse is int else declared.minimum - 0.001)
    if declared.maximum is not None:
        outside.append(declared.maximum + 1 if declared.parse is int else declared.maximum * 1.01 + 0.001)
    for value in outside:
        with pytest.raises(ConfigError, match=declared.variable):
            Config.load({}, environ={declared.variable: _as_text(value)})
        with pytest.raises(ConfigError, match=declared.variable):
            Config.load({declared.variable: value}, environ={})


def test_app_config_wins_over_the_environment_and_the_environment_over_the_default():
    environ = {"PRICEFEED_STALE_AFTER": "20", "PRICEFEED_PAIRS": "ETH/USD", "PRICEFEED_METRICS": "false"}
    from_environ = Config.load({}, environ=environ)
    assert (from_environ.delivery.stale_after, from_environ.upstream.pairs, from_environ.observability.metrics) == \
        (20.0, ("ETH/USD",), False)
    both = Config.load({"PRICEFEED_STALE_AFTER": 5, "PRICEFEED_PAIRS": ["BTC/USD", "SOL/USD"]}, environ=environ)
    assert both.delivery.stale_after == 5.0 and both.upstream.pairs == ("BTC/USD", "SOL/USD")
    assert both.observability.metrics is False
    assert Config.load({}, environ={}).delivery.stale_after == 10.0


def test_every_setting_belongs_to_one_group_and_its_variable_is_its_attribute_upper_case():
    assert len({d.variable for d in SETTINGS}) == len(SETTINGS)
    for declared in SETTINGS:
        group = getattr(Config(), declared.group)
        assert declared.attribute in {f.name for f in dataclasses.fields(group)}
        assert declared.variable == "PRICEFEED_" + declared.attribute.upper()
        assert declared.kind in ("operator", "tuning") and declared.doc
        assert default_text(declared.default)


def test_a_rule_across_groups_is_checked_when_a_config_is_built():
    with pytest.raises(ConfigError, match="PRICEFEED_WS_IDLE_TIMEOUT"):
        Config.load({"PRICEFEED_WS_IDLE_TIMEOUT": 5, "PRICEFEED_HEARTBEAT_INTERVAL": 10}, environ={})


def test_the_write_spacing_must_stay_well_under_the_lag_bound():
    with pytest.raises(ConfigError, match="PRICEFEED_MIN_WRITE_SPACING"):
        Config.load({"PRICEFEED_MIN_WRITE_SPACING": 0.04, "PRICEFEED_LAG_BOUND": 0.05}, environ={})
    assert Config.load({"PRICEFEED_MIN_WRITE_SPACING": 0.04, "PRICEFEED_LAG_BOUND": 0.08},
                       environ={}).delivery.min_write_spacing == 0.04
