"""GET {prefix}/metrics: the Prometheus text, for operators only (like the detailed health report)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from pricefeed.web.access import admin_allowed
from pricefeed.web.errors import json_error
from pricefeed.web.metrics import CONTENT_TYPE

METRICS_BLUEPRINT = "pricefeed_metrics"


def create_metrics_blueprint(extension_key: str) -> Blueprint:
    metrics = Blueprint(METRICS_BLUEPRINT, __name__)

    @metrics.route("/metrics", methods=["GET"])
    def scrape():
        if not admin_allowed(request):
            return json_error(403, "forbidden",
                              "metrics need Authorization: Bearer <PRICEFEED_ADMIN_TOKEN>, or (with no token "
                              "set) a direct request from loopback")
        node_metrics = current_app.extensions[extension_key].metrics
        response = Response(node_metrics.exposition(), content_type=CONTENT_TYPE)
        response.headers["Cache-Control"] = "no-cache"
        return response

    return metrics
