"""Headers every response of the extension carries, and the dashboard's Content-Security-Policy.

The dashboard runs no inline script or style: its settings travel in a
`<script type="application/json">` block, which a browser never executes, so the
policy can forbid everything but our own files. `img-src data:` is for the inline
SVG favicon (an image cannot run script).
"""
from __future__ import annotations

from flask import Response

from pricefeed.config import Config


def dashboard_policy(config: Config) -> str:
    return "; ".join((
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        f"frame-ancestors {config.endpoint.frame_ancestors}",
    ))


def add_common_headers(response: Response, config: Config) -> Response:
    """nosniff and the referrer policy: on every response of the extension, errors included."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", config.endpoint.referrer_policy)
    return response


def add_dashboard_headers(response: Response, config: Config) -> Response:
    add_common_headers(response, config)
    response.headers.setdefault("Content-Security-Policy", dashboard_policy(config))
    if "'none'" in config.endpoint.frame_ancestors:
        # For browsers that predate frame-ancestors.
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response
