"""GET {prefix}/metrics: the Prometheus text, for operators only (like the detailed health report)."""
from __future__ import annotations

import time

from flask import Blueprint, Response, request

from pricefeed.web.http.api import admin_allowed, current_state, json_error
from pricefeed.web.metrics.series import CONTENT_TYPE

METRICS_BLUEPRINT = "pricefeed_metrics"


def create_metrics_blueprint() -> Blueprint:
    metrics = Blueprint(METRICS_BLUEPRINT, __name__)

    @metrics.route("/metrics", methods=["GET"], provide_automatic_options=False)
    def scrape():
        if not admin_allowed(request):
            return json_error(403, "forbidden",
                              "metrics need Authorization: Bearer <PRICEFEED_ADMIN_TOKEN>, or (with no token "
                              "set) a direct request from loopback")
        node_metrics = current_state().metrics
        assert node_metrics is not None       # registered only with metrics on
        started = time.perf_counter()
        body = node_metrics.exposition()
        response = Response(body, content_type=CONTENT_TYPE)
        response.headers["Cache-Control"] = "no-cache"
        # How long building the text took here, apart from any wait for the worker (bench/metrics_scrape.py).
        response.headers["Server-Timing"] = f"metrics;dur={(time.perf_counter() - started) * 1000:.2f}"
        return response

    return metrics
