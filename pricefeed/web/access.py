"""Who may see what only an operator should: the detailed /health, metrics, test-only switches.

With `PRICEFEED_ADMIN_TOKEN` set, `Authorization: Bearer <token>` is required,
from any address (compared in constant time). With none set, only a direct
loopback peer that is not a trusted proxy (client_address.is_direct_loopback):
the operator's own shell, never a visitor relayed by nginx on the same host.
"""
from __future__ import annotations

import hmac

from flask import Request, current_app

from pricefeed.web.client_address import is_direct_loopback

EXTENSION_KEY = "pricefeed"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(request: Request, expected: str) -> bool:
    given = bearer_token(request)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def admin_allowed(request: Request) -> bool:
    """The request may see the operator's view (see the module docstring)."""
    config = current_app.extensions[EXTENSION_KEY].config
    if config.admin_token:
        return token_matches(request, config.admin_token)
    return is_direct_loopback(request.environ, config.trusted_proxies)


def test_switch_allowed(request: Request) -> bool:
    """Test-only switches (fault injection): a direct loopback peer, and the token when one is set."""
    config = current_app.extensions[EXTENSION_KEY].config
    if not is_direct_loopback(request.environ, config.trusted_proxies):
        return False
    return config.admin_token is None or token_matches(request, config.admin_token)
