"""The dashboard blueprint: `/` and `/dashboard`, with the browser client under /pricefeed-static."""
from __future__ import annotations

from flask import Blueprint, Response, render_template, url_for

from pricefeed.web.http.api import API_BLUEPRINT, current_node
from pricefeed.web.http.assets import asset_folder
from pricefeed.web.http.security_headers import add_dashboard_headers

DASHBOARD_BLUEPRINT = "pricefeed_dashboard"


def create_dashboard_blueprint() -> Blueprint:
    dashboard = Blueprint(DASHBOARD_BLUEPRINT, __name__,
                          template_folder=asset_folder("templates"),
                          static_folder=asset_folder("static"),
                          static_url_path="/pricefeed-static")

    @dashboard.after_request
    def _headers(response: Response) -> Response:
        # The page and its static files: a CSP without inline script, nosniff, no referrer.
        return add_dashboard_headers(response, current_node().config.endpoint)

    @dashboard.route("/")
    @dashboard.route("/dashboard")
    def page():
        node = current_node()
        stream_url = url_for(f"{API_BLUEPRINT}.stream")
        return render_template(
            "dashboard.html",
            title="pricefeed",
            pairs=[p.name for p in node.catalog.configured],
            stream_url=stream_url,
            # Beside /stream under the same prefix (a 404 there just means no sparkline until live points come).
            history_url=stream_url.rsplit("/", 1)[0] + "/history",
            prices_url=url_for(f"{API_BLUEPRINT}.prices"),
            health_url=url_for(f"{API_BLUEPRINT}.health"),
            static_url=url_for(f"{DASHBOARD_BLUEPRINT}.static", filename="").rstrip("/"),
            stale_after_ms=int(node.config.delivery.stale_after * 1000),
        )

    return dashboard
