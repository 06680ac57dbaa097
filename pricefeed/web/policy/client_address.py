"""Who a request comes from: the socket's peer, or, behind a trusted proxy, the hop it vouches for.

`X-Forwarded-For` is a list any client can write. Only the hops our own proxies
appended are believed: read from the right, skipping every hop that is one of
`PRICEFEED_TRUSTED_PROXIES`, the first address that is not is the client. A
request straight from an untrusted peer is that peer, whatever it wrote.
"""
from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# One IPv6 subscriber usually holds a whole /64: counting /128s would give it 2^64 "clients".
IPV6_CLIENT_PREFIX = 64


@functools.lru_cache(maxsize=4096)      # pure; a stream's open asks it twice, reconnects ask it again
def parse_ip(text: str | None) -> IPAddress | None:
    """An IP from a socket address or a forwarded hop ("[::1]", "1.2.3.4:5678" tolerated); None if not one."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]          # IPv4 with a port
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress | None, trusted: Iterable[Network]) -> bool:
    return address is not None and any(address in network for network in trusted)


def peer_address(environ: dict) -> IPAddress | None:
    """The socket's peer (REMOTE_ADDR as the WSGI server saw it; gunicorn never rewrites it)."""
    return parse_ip(environ.get("REMOTE_ADDR"))


def client_ip(environ: dict, trusted: Iterable[Network]) -> IPAddress | None:
    """The client's address under the trusted-proxy rule (see the module docstring)."""
    trusted = tuple(trusted)
    address = peer_address(environ)
    # A peer without an IP came over a unix socket: only a local process (your proxy) can.
    if address is not None and not is_trusted(address, trusted):
        return address
    hops = [hop for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        forwarded = parse_ip(hop)
        if forwarded is None and address is None:
            return None
        if forwarded is None:
            # Our proxy wrote something unreadable: the last hop we could vouch for stands.
            return address
        address = forwarded
        if not is_trusted(address, trusted):
            return address
    return address     # every hop was one of ours: the left-most is as close as we get


def client_key(environ: dict, trusted: Iterable[Network]) -> str:
    """The string the per-address limits count by: an IPv4 address or an IPv6 /64."""
    address = client_ip(environ, trusted)
    if address is None:
        return "unknown"   # no peer (a test client, a unix socket): one shared bucket
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


def is_direct_loopback(environ: dict, trusted: Iterable[Network]) -> bool:
    """The peer is this host and not a proxy we trust (nginx on localhost must not turn every
    visitor into "loopback"); and it forwards no one: a loopback peer sending X-Forwarded-For or
    Forwarded is a proxy nobody declared, and its visitors are not this host."""
    address = peer_address(environ)
    forwarding = "HTTP_X_FORWARDED_FOR" in environ or "HTTP_FORWARDED" in environ
    return (address is not None and address.is_loopback and not forwarding
            and not is_trusted(address, trusted))
