"""Who may see what only an operator should: the detailed /health, metrics, test-only switches.

With `PRICEFEED_ADMIN_TOKEN` set, `Authorization: Bearer <token>` is required,
from any address (compared in constant time). With none set, only a direct
loopback peer that is not a trusted proxy (client_address.is_direct_loopback):
the operator's own shell, never a visitor relayed by nginx on the same host.
"""
from __future__ import annotations

import functools
import hmac

from pricefeed.settings.endpoint import EndpointSettings
from pricefeed.web.policy.client_address import is_direct_loopback


def bearer_token(environ: dict) -> str | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(environ: dict, expected: str) -> bool:
    given = bearer_token(environ)
    return given is not None and hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode())


def operator_allowed(environ: dict, endpoint: EndpointSettings) -> bool:
    """The request (its WSGI environ) may see the operator's view (see the module docstring)."""
    if endpoint.admin_token:
        return token_matches(environ, endpoint.admin_token)
    forwarding = "HTTP_X_FORWARDED_FOR" in environ or "HTTP_FORWARDED" in environ
    return _direct_loopback(environ.get("REMOTE_ADDR"), forwarding, endpoint.trusted_proxies)


@functools.lru_cache(maxsize=4096)      # asked on every stream's open, mostly for the same few peers
def _direct_loopback(remote: str | None, forwarding: bool, trusted: tuple) -> bool:
    environ: dict = {} if remote is None else {"REMOTE_ADDR": remote}
    if forwarding:
        environ["HTTP_FORWARDED"] = ""
    return is_direct_loopback(environ, trusted)


def test_switch_allowed(environ: dict, endpoint: EndpointSettings) -> bool:
    """Test-only switches (fault injection): a direct loopback peer, and the token when one is set."""
    if not is_direct_loopback(environ, endpoint.trusted_proxies):
        return False
    return endpoint.admin_token is None or token_matches(environ, endpoint.admin_token)
