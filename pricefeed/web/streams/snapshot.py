"""The snapshot a stream opens with (and /prices' body), built once per request.

A stream's snapshot is JSON made of one entry per pair and a few fields about the
service. Between two prices of a pair thousands of streams may open (a restart brings
every browser back at once), and each would encode the same entry again — the JSON
and the 24 h change (decimal arithmetic) were a sixth of an open. `PriceEntries` keeps
each pair's encoded entry for as long as its price is the same and fresh; a stale entry
(which carries its age) is encoded per request.
"""
from __future__ import annotations

import time
import weakref

from pricefeed.delivery.hub import Hub
from pricefeed.delivery.sse import encode_json
from pricefeed.node import Node


def snapshot_body(node: Node, pairs: tuple[str, ...], operator: bool) -> dict:
    """The snapshot as a dict (/prices answers it with jsonify)."""
    body = {"prices": node.hub.snapshot(pairs), **_service_fields(node, pairs)}
    if operator:
        # Which worker answered (host:pid) is the operator's business only; browsers never see it.
        body["worker"] = node.worker_id
    return body


def _service_fields(node: Node, pairs: tuple[str, ...]) -> dict:
    hub = node.hub
    book = hub.book
    return {
        "mode": node.mode,
        "simulated": node.simulated,
        # The requested pairs only: the book may hold every pair the exchange lists.
        "stale": sorted(p for p in pairs if (entry := book.get(p)) is not None and hub.is_stale(entry)),
        "stale_after_ms": int(node.config.delivery.stale_after * 1000),
        "server_time": int(time.time() * 1000),
        "resume": None,
        # Every requested pair, priced or not: live | stale | halted | unlisted, and what it trades as.
        "pairs": hub.pair_states(pairs),
        "reason": node.access.current(),
        "detail": node.mode_detail(),
    }


class PriceEntries:
    """Per hub: each pair's snapshot entry as JSON, kept while its price is the same and fresh."""

    __slots__ = ("_encoded", "__weakref__")

    def __init__(self) -> None:
        self._encoded: dict[str, tuple[object, object, str]] = {}

    def entry_json(self, hub: Hub, pair: str, now_ms: int) -> str | None:
        entry = hub.book.get(pair)
        if entry is None:
            return None
        tick = entry.tick
        if hub.is_stale(entry):
            return encode_json(hub.price_payload(tick, stale=True, age_ms=max(0, now_ms - tick.ts)))
        # The catalogue's standing (halted, unlisted, aliased) is part of the entry: a new one re-encodes.
        standing = hub.standings.get(pair)
        cached = self._encoded.get(pair)
        if cached is not None and cached[0] is tick and cached[1] is standing:
            return cached[2]
        text = encode_json(hub.price_payload(tick))
        self._encoded[pair] = (tick, standing, text)
        return text


_ENTRIES: weakref.WeakKeyDictionary[Hub, PriceEntries] = weakref.WeakKeyDictionary()


def snapshot_json(node: Node, pairs: tuple[str, ...], operator: bool, extra: dict) -> str:
    """The snapshot as JSON, the same object as snapshot_body plus `extra` (interval, resume)."""
    hub = node.hub
    entries = _ENTRIES.get(hub)
    if entries is None:
        entries = _ENTRIES[hub] = PriceEntries()
    now_ms = int(time.time() * 1000)
    prices = [text for pair in pairs if (text := entries.entry_json(hub, pair, now_ms)) is not None]
    fields = _service_fields(node, pairs)
    fields.update(extra)
    if operator:
        fields["worker"] = node.worker_id
    return '{"prices":[' + ",".join(prices) + "]," + encode_json(fields)[1:]
