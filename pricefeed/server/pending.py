"""Connections that have not sent a complete request head yet: how many each address may
hold, and how long one may take.

A slow-header client (slowloris) opens connections and sends a header line every few
seconds: gunicorn's parser reads each line as it comes, and its first-request wait is the
keep-alive Timeout (5 s) — renewed by nothing, but nothing limits how many such
connections one address holds either, up to `worker_connections`: a greenlet and a file
descriptor each, and the browsers that come next find the pool full.

Here, at accept (accept.py), before gunicorn's parser sees a byte:
- an address already holding PRICEFEED_MAX_PENDING_PER_IP connections without a complete
  head has its new connection closed at once (no answer: it has not asked anything);
- a connection whose head is not complete PRICEFEED_REQUEST_HEAD_TIMEOUT seconds after it
  was accepted is closed.
A head is complete when its blank line has arrived (peeked, not read: gunicorn then parses
it from the socket as ever). A connection that sends a longer head than the peek window
leaves the count and takes gunicorn's path (its line and header limits, limits.py).

Counted per worker, in a dict: accept is hot and a connection waits for its head for
milliseconds, so sharing the counts between workers (cluster/host_address_counts.py, a file
lock per acquire and per release) would cost more than what it bounds. The kernel spreads
one address's connections over the workers, so an address holds at most
workers × PRICEFEED_MAX_PENDING_PER_IP pending connections per instance.

The key is the TCP peer (an IPv4 address or an IPv6 /64): X-Forwarded-For is in the head
that has not arrived. A peer in PRICEFEED_TRUSTED_PROXIES (nginx) is exempt from the
per-address count — its connections carry every visitor — and still has the head deadline;
the per-visitor limits are then nginx's (`limit_conn`, `client_header_timeout`).
"""
from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Any

IPV6_PREFIX = 64


class PendingConnections:
    """One worker's connections waiting for their first request head, by address."""

    def __init__(self, limit: int, head_timeout: float, exempt: Iterable[Any] = ()):
        self.limit = limit                    # 0: no per-address limit
        self.head_timeout = head_timeout      # 0: no deadline
        self._exempt = tuple(exempt)
        self._counts: dict[str, int] = {}
        self.pending = 0                      # now, all addresses
        self.refused_per_address = 0          # closed at accept: the address held `limit` already
        self.head_timeouts = 0                # closed: no complete head within head_timeout
        self.key_of = functools.lru_cache(maxsize=4096)(self._key_of)

    def _key_of(self, host: str) -> str | None:
        """The address's key, or None if it is exempt (a trusted proxy)."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return host
        if any(address in network for network in self._exempt):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
        return host

    def acquire(self, peer: Any) -> tuple[bool, str | None]:
        """(counted, key) for a connection just accepted from `peer` (its socket address): False
        if its address already holds its limit. Counted ones are held until `release(key)`."""
        host = peer[0] if isinstance(peer, tuple) and peer else None
        key = self.key_of(host) if isinstance(host, str) else None
        if key is not None and self.limit:
            held = self._counts.get(key, 0)
            if held >= self.limit:
                self.refused_per_address += 1
                return False, key
            self._counts[key] = held + 1
        self.pending += 1
        return True, key

    def release(self, key: str | None) -> None:
        """The connection counted under `key` sent its head, timed out or left."""
        self.pending -= 1
        if key is not None and self.limit:
            held = self._counts.get(key, 0) - 1
            if held > 0:
                self._counts[key] = held
            else:
                self._counts.pop(key, None)

    def held(self, key: str) -> int:
        return self._counts.get(key, 0)

    def status(self) -> dict:
        return {"pending": self.pending, "limit_per_address": self.limit, "head_timeout_s": self.head_timeout,
                "refused_per_address": self.refused_per_address, "head_timeouts": self.head_timeouts}
