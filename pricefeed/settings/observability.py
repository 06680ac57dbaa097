"""Logs and metrics."""
from __future__ import annotations

from dataclasses import dataclass

from pricefeed.settings import parsers
from pricefeed.settings.declaration import OPERATOR, SettingsGroup, setting


@dataclass(frozen=True)
class ObservabilitySettings(SettingsGroup):
    TITLE = "Logs and metrics"
    SUMMARY = "How the service reports on itself (log_format.py, web/metrics.py)."
    ATTRIBUTE = "observability"

    log_format: str = setting(
        parsers.choice("text", "json"), "text",
        "app.py and the service's gunicorn.conf.py: `text` (one line per event, key=value fields) or `json` "
        "(one JSON object per line, python-json-logger). The extension itself configures no handlers.",
        kind=OPERATOR)
    metrics: bool = setting(
        parsers.boolean, True,
        "Serve Prometheus metrics at {prefix}/metrics (operators only, like the detailed health report). "
        "Across gunicorn workers they are summed through PROMETHEUS_MULTIPROC_DIR, which the bundled "
        "gunicorn config sets up.", kind=OPERATOR)
