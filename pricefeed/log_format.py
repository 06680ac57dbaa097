"""Log lines for the service (app.py and its gunicorn.conf.py): key=value text or JSON, one line per event.

The extension itself never configures logging — it only logs to `logging.getLogger(...)`
so a host app's own rules apply. This module is for the service, and for a host that wants
the same format:

    ts=2026-12-01T14:03:07.123Z level=INFO logger=pricefeed.node pid=4242 msg="pricefeed started …"
    {"ts": "2026-12-01T14:03:07.123Z", "level": "INFO", "logger": "pricefeed.node", "pid": 4242, "msg": "…"}

Anything passed as `extra={...}` becomes a field. Tracebacks are folded into the line
(`exc=` / `"exc"`). Credentials in URLs (`redis://user:secret@`), bearer tokens and
`token=` query values are masked in every line.

Standard library only at import (python-json-logger is imported when JSON is chosen): the
gunicorn master imports this before any worker has patched.
"""
from __future__ import annotations

import logging
import logging.config
import re
import time
from typing import Any

FORMATS = ("text", "json")
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime",
                                                                                   "taskName"}
_SECRETS = (
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s\"]*:)[^@\s\"]+@", re.I), r"\1***@"),
    (re.compile(r"(\bBearer\s+)[^\s\"]+", re.I), r"\1***"),
    (re.compile(r"(\b(?:admin_)?token=)[^&\s\"]+", re.I), r"\1***"),
)
_BARE_VALUE = re.compile(r"^[^\s\"=\\]+$")


def redact(text: str) -> str:
    """`text` with credentials masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    fields: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname, "logger": record.name,
                              "pid": record.process, "msg": record.getMessage()}
    for key, value in vars(record).items():
        if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
            fields[key] = value
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    elif record.exc_text:
        fields["exc"] = record.exc_text
    if record.stack_info:
        fields["stack"] = formatter.formatStack(record.stack_info)
    return fields


def _quoted(value: Any) -> str:
    text = str(value)
    if text and _BARE_VALUE.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


class KeyValueFormatter(logging.Formatter):
    """One line per record: `ts=… level=… logger=… pid=… msg="…"` then any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record, self)
        return redact(" ".join(f"{key}={_quoted(value)}" for key, value in fields.items()))


def json_formatter_class() -> type[logging.Formatter]:
    """python-json-logger's formatter with the same field names as the text lines."""
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:
        raise RuntimeError("PRICEFEED_LOG_FORMAT=json needs python-json-logger: "
                           "pip install 'pricefeed[json-logs]' (or python-json-logger)") from None

    class JsonLineFormatter(JsonFormatter):
        def format(self, record: logging.LogRecord) -> str:
            return redact(super().format(record))

        def add_fields(self, log_record: dict, record: logging.LogRecord, message_dict: dict) -> None:
            log_record.update(_fields(record, self))
            # The traceback is already in "exc" / "stack", under the same names as in the text lines.
            log_record.update({k: v for k, v in message_dict.items() if k not in ("exc_info", "stack_info")})

    return JsonLineFormatter


def formatter(log_format: str = "text") -> logging.Formatter:
    """A formatter for `log_format` (`text` or `json`)."""
    if log_format not in FORMATS:
        raise ValueError(f"PRICEFEED_LOG_FORMAT={log_format!r} is invalid: expected one of {', '.join(FORMATS)}")
    return json_formatter_class()() if log_format == "json" else KeyValueFormatter()


def configure(log_format: str = "text", level: str = "INFO") -> None:
    """Give the root logger one stderr handler in `log_format`, unless something configured it already
    (gunicorn run with `logconfig_dict()` did: its lines and the app's then share one handler)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def logconfig_dict(log_format: str = "text", level: str = "INFO", access_log: str | None = None) -> dict[str, Any]:
    """For gunicorn's `logconfig_dict`: its error log and the app's as one stream of lines on stderr.

    `access_log` as gunicorn's `accesslog`: None for none, "-" for the same stream, else a file
    (in the same format). gunicorn logs access lines whenever a logconfig_dict is set, so
    "none" has to be said here.
    """
    formatter(log_format)   # fail in the master, with the variable's name, not in every worker
    factory = f"{__name__}.{'json_formatter' if log_format == 'json' else 'KeyValueFormatter'}"
    handlers: dict[str, Any] = {"pricefeed": {"class": "logging.StreamHandler", "formatter": "pricefeed",
                                              "stream": "ext://sys.stderr"}}
    if access_log is None:
        access = {"level": "CRITICAL", "handlers": [], "propagate": False}
    elif access_log == "-":
        access = {"level": "INFO", "handlers": [], "propagate": True}
    else:
        handlers["access"] = {"class": "logging.FileHandler", "formatter": "pricefeed", "filename": access_log}
        access = {"level": "INFO", "handlers": ["access"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": level.upper(), "handlers": ["pricefeed"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": access,
        },
        "handlers": handlers,
        "formatters": {"pricefeed": {"()": factory}},
    }


def json_formatter() -> logging.Formatter:
    """A factory dictConfig can name (`"()"`) for the JSON formatter."""
    return json_formatter_class()()
