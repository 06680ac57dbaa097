"""Headers every response of the extension carries, and the dashboard's Content-Security-Policy.

The dashboard runs no inline script or style: its settings travel in a
`<script type="application/json">` block, which a browser never executes, so the
policy can forbid everything but our own files. `img-src data:` is for the inline
SVG favicon (an image cannot run script).
"""
from __future__ import annotations

from flask import Response

from pricefeed.settings.endpoint import EndpointSettings


def dashboard_policy(endpoint: EndpointSettings) -> str:
    return "; ".join((
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        f"frame-ancestors {endpoint.frame_ancestors}",
    ))


def add_common_headers(response: Response, endpoint: EndpointSettings) -> Response:
    """nosniff and the referrer policy: on every response of the extension, errors included."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", endpoint.referrer_policy)
    return response


def add_dashboard_headers(response: Response, endpoint: EndpointSettings) -> Response:
    add_common_headers(response, endpoint)
    response.headers.setdefault("Content-Security-Policy", dashboard_policy(endpoint))
    if "'none'" in endpoint.frame_ancestors:
        # For browsers that predate frame-ancestors.
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response
