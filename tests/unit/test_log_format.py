"""Log lines: one per event, key=value or JSON, secrets masked."""
from __future__ import annotations

import io
import json
import logging

import pytest

from pricefeed import log_format as logs


def _line(log_format: str, message: str, *args, **extra) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(log_format))
    logger = logging.getLogger(f"pricefeed.test.{log_format}")
    logger.handlers[:] = [handler]
    logger.propagate, logger.level = False, logging.INFO
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logger.error(message, *args, exc_info=True, extra=extra)
    return stream.getvalue()


def test_a_text_line_is_key_value_on_one_line_with_the_traceback_folded_in():
    text = _line("text", "publish failed (%s)", "timeout", pair="BTC/USD")
    assert text.count("\n") == 1
    assert text.startswith("ts=") and " level=ERROR logger=pricefeed.test.text pid=" in text
    assert 'msg="publish failed (timeout)"' in text and "pair=BTC/USD" in text
    assert 'exc="Traceback' in text and "boom\\nsecond line" in text


def test_a_json_line_is_one_object_with_the_same_fields():
    text = _line("json", "publish failed (%s)", "timeout", pair="BTC/USD")
    assert text.count("\n") == 1
    body = json.loads(text)
    assert body["level"] == "ERROR" and body["logger"] == "pricefeed.test.json" and body["pair"] == "BTC/USD"
    assert body["msg"] == "publish failed (timeout)" and "boom" in body["exc"]
    assert "exc_info" not in body


@pytest.mark.parametrize("log_format", logs.FORMATS)
def test_credentials_never_reach_a_line(log_format):
    text = _line(log_format, "connecting to %s with %s and %s", "rediss://app:s3cret@redis.internal:6380/0",
                 "Authorization: Bearer tok-123", "/health?token=abc")
    assert "s3cret" not in text and "tok-123" not in text and "abc" not in text
    assert "rediss://app:***@redis.internal:6380/0" in text


def test_an_unknown_format_is_refused_with_the_variable_name():
    with pytest.raises(ValueError, match="PRICEFEED_LOG_FORMAT"):
        logs.formatter("xml")


def test_the_extension_configures_no_handlers():
    from flask import Flask

    from pricefeed import PriceFeed
    before = {name: list(logging.getLogger(name).handlers) for name in ("", "pricefeed", "flask.app")}
    app = Flask(__name__)
    app.config["PRICEFEED_PAIRS"] = "BTC/USD"
    PriceFeed(app)
    after = {name: list(logging.getLogger(name).handlers) for name in before}
    assert after == before
    assert all(not logging.getLogger(name).handlers for name in logging.root.manager.loggerDict
               if name.startswith("pricefeed") and isinstance(logging.getLogger(name), logging.Logger)
               and not name.startswith("pricefeed.test"))
