"""Who may see the operator views (the detailed health report, /metrics).

PLACEHOLDER (issue 12's metrics need it before issue 11 lands): issue 11 owns this
module and replaces it with the full rule (trusted proxies and all). The signature,
`admin_allowed(request) -> bool`, is the contract both sides use.

The rule here: with `PRICEFEED_ADMIN_TOKEN` set, a request must carry
`Authorization: Bearer <token>` (compared in constant time); with none set, only a
direct loopback peer is allowed — and a request that came through a proxy (it carries
`X-Forwarded-For` or `Forwarded`) is not direct, whatever address the proxy connects from.
"""
from __future__ import annotations

import hmac
import ipaddress
import os

from flask import Request, current_app

TOKEN_SETTING = "PRICEFEED_ADMIN_TOKEN"


def admin_allowed(request: Request) -> bool:
    """True if this request may see operator-only views."""
    token = current_app.config.get(TOKEN_SETTING) or os.environ.get(TOKEN_SETTING) or ""
    if token:
        scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), str(token).encode())
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False
