"""Text → typed value for settings. Each raises ValueError with what was expected (never the value)."""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from pricefeed.redis_urls import SENTINEL_SCHEME, parse_sentinel_url


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        parts = urlsplit(text.strip())
        located = parts.path if parts.scheme == "unix" else parts.hostname
        if parts.scheme not in schemes or not located:
            raise ValueError(f"expected a {'/'.join(schemes)} URL")
        return text.strip().rstrip("/")
    parse.__name__ = f"{'/'.join(schemes)} URL"
    return parse


def redis_url(text: str) -> str | None:
    """redis://, rediss://, unix:// or the Sentinel grammar (pricefeed/redis_urls.py); blank: None."""
    if not text.strip():
        return None
    if text.strip().startswith(SENTINEL_SCHEME + ":"):
        parse_sentinel_url(text)
        return text.strip()
    return url("redis", "rediss", "unix")(text)


def path_prefix(text: str) -> str:
    text = text.strip()
    if not text.startswith("/") or text.endswith("/") or " " in text:
        raise ValueError("expected a path like /api/market-data")
    return text


def pair_list(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise ValueError("expected a comma-separated list like BTC/USD,ETH/USD")
    return items


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return lowered
    parse.__name__ = " | ".join(choices)
    return parse


def asset_code(text: str) -> str:
    if not text.isascii():   # before upper(): "ß".upper() is "SS"
        raise ValueError("expected an asset code like USDT")
    text = text.strip().upper()
    if not text.isalnum():
        raise ValueError("expected an asset code like USDT")
    return text


def optional_text(text: str) -> str | None:
    return text.strip() or None


def text_or(default: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        return text.strip() or default
    parse.__name__ = "text"
    return parse


def networks(text: str) -> tuple:
    """IPs and CIDRs, comma-separated, as ip_network values (a bare IP is a /32 or /128)."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                found.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError("expected IPs or CIDRs like 127.0.0.1,10.0.0.0/8") from None
    return tuple(found)


ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?$")


def origins(text: str) -> tuple[str, ...]:
    items = tuple(item.strip().lower().rstrip("/") for item in text.split(",") if item.strip())
    if "*" in items:
        if len(items) > 1:
            raise ValueError("`*` allows every origin: write it alone")
        return items
    if not all(ORIGIN.match(item) for item in items):
        raise ValueError("expected origins like https://example.com or http://localhost:8080, or `*`")
    return items


def frame_ancestors(text: str) -> str:
    items = text.split()
    allowed = all(item in ("'none'", "'self'") or ORIGIN.match(item.lower()) for item in items)
    if not items or not allowed or ("'none'" in items and len(items) > 1):
        raise ValueError("expected 'none', 'self' or origins like https://example.com, space-separated")
    return " ".join(items)


def policy_token(text: str) -> str:
    text = text.strip()
    if not re.fullmatch(r"[a-z-]{1,40}", text):
        raise ValueError("expected a policy like no-referrer or strict-origin-when-cross-origin")
    return text


# app.config may give these as lists; they are joined with commas before parsing.
LIST_PARSERS = (pair_list, origins, networks)

# What the reference says each parser takes (number parsers are Python's own).
TYPE_NAMES: dict[Callable, str] = {
    int: "integer", float: "number", str: "text", boolean: "boolean", redis_url: "Redis URL",
    path_prefix: "path", pair_list: "BASE/QUOTE list", asset_code: "asset code", optional_text: "text",
    networks: "IP/CIDR list", origins: "origin list", frame_ancestors: "CSP source list",
    policy_token: "policy token",
}
