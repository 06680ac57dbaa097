"""The heads of a stream route's answers, built for WSGI without a Flask response object.

The same headers the blueprint's after_request gives every API answer (http/api.py):
`Vary: Origin` and, for an allowed cross-site page, `Access-Control-Allow-Origin`
(policy/origins.py); `nosniff` and the referrer policy (http/security_headers.py). Errors are
the JSON bodies of http/api.py json_error, byte for byte what Flask's jsonify writes.
"""
from __future__ import annotations

import json
from http import HTTPStatus

from pricefeed.settings.endpoint import EndpointSettings
from pricefeed.web.errors import ApiError
from pricefeed.web.policy.origins import cors_headers
from pricefeed.web.streams.request import host_url

Headers = list[tuple[str, str]]


def status_line(status: int) -> str:
    """As werkzeug writes it ("503 SERVICE UNAVAILABLE")."""
    try:
        return f"{status} {HTTPStatus(status).phrase.upper()}"
    except ValueError:
        return f"{status} UNKNOWN"


def common_headers(environ: dict, endpoint: EndpointSettings) -> Headers:
    """CORS (Vary, and Allow-Origin for an allowed cross-site page) and the security headers."""
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        headers = [("Vary", "Origin")]          # what cors_headers answers without one, for less work
    else:
        headers = list(cors_headers(origin, host_url(environ), endpoint).items())
    headers.append(("X-Content-Type-Options", "nosniff"))
    headers.append(("Referrer-Policy", endpoint.referrer_policy))
    return headers


def error_answer(environ: dict, endpoint: EndpointSettings, error: ApiError) -> tuple[str, Headers, bytes]:
    """(status line, headers, body) of a JSON error: {"error": ..., "detail": ...}."""
    body = (json.dumps({"error": error.error, "detail": error.detail}, separators=(",", ":"), sort_keys=True)
            + "\n").encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    headers.extend((key, str(value)) for key, value in error.headers.items())
    headers.extend(common_headers(environ, endpoint))
    return status_line(error.status), headers, body
