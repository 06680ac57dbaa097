"""Which optional server features this checkout has, for tests written ahead of them."""
from __future__ import annotations

import functools
import os


@functools.cache
def api_routes() -> frozenset[str]:
    """The rules of the API blueprint under the default prefix, read from a fresh app's URL map."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PRICEFEED_")}
    try:
        from flask import Flask

        from pricefeed import PriceFeed
        probe = Flask("pricefeed-feature-probe")
        PriceFeed(probe)
        return frozenset(rule.rule for rule in probe.url_map.iter_rules())
    finally:
        os.environ.update(saved)


def has_endpoint(name: str) -> bool:
    """True when `{prefix}/<name>` is a registered route (not the catch-all 404)."""
    return f"/api/market-data/{name}" in api_routes()


def has_interval_parameter() -> bool:
    """The per-client `interval` query parameter."""
    from pathlib import Path
    package = Path(__file__).resolve().parents[2] / "pricefeed"
    return any("malformed_interval" in path.read_text() for path in package.rglob("*.py"))
