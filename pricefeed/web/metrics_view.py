"""GET {prefix}/metrics: the Prometheus text, for operators only (like the detailed health report)."""
from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, request

from pricefeed.web.access import admin_allowed
from pricefeed.web.errors import json_error
from pricefeed.web.metrics import CONTENT_TYPE

METRICS_BLUEPRINT = "pricefeed_metrics"


def create_metrics_blueprint(extension_key: str) -> Blueprint:
    metrics = Blueprint(METRICS_BLUEPRINT, __name__)

    @metrics.route("/metrics", methods=["GET"], provide_automatic_options=False)
    def scrape():
        if not admin_allowed(request):
            return json_error(403, "forbidden",
                              "metrics need Authorization: Bearer <PRICEFEED_ADMIN_TOKEN>, or (with no token "
                              "set) a direct request from loopback")
        node_metrics = current_app.extensions[extension_key].metrics
        started = time.perf_counter()
        body = node_metrics.exposition()
        response = Response(body, content_type=CONTENT_TYPE)
        response.headers["Cache-Control"] = "no-cache"
        # How long building the text took here, apart from any wait for the worker (bench/metrics_scrape.py).
        response.headers["Server-Timing"] = f"metrics;dur={(time.perf_counter() - started) * 1000:.2f}"
        return response

    return metrics
