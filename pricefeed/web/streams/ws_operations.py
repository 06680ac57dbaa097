"""A WebSocket client's operations, parsed into checked values (or an OperationError to answer).

    {"op": "subscribe", "pairs": ["BTC/USD", ...]}
    {"op": "unsubscribe", "pairs": [...]}
    {"op": "ping"}
"""
from __future__ import annotations

import json

from pricefeed.pairs import PairCatalog, PairError

OPERATIONS = ("subscribe", "unsubscribe", "ping")
MAX_PAIR_TEXT = 40          # longer than any pair name: refused before parsing


class OperationError(ValueError):
    """Answered with an `error` event; the socket stays open."""

    def __init__(self, error: str, detail: str):
        super().__init__(detail)
        self.error, self.detail = error, detail


def parse_operation(text: str, catalog: PairCatalog) -> tuple[str, tuple[str, ...]]:
    """(op, pair names) of one message; pairs are resolved against the served catalog, in the
    order given, without duplicates, and empty for `ping`."""
    try:
        body = json.loads(text)
    except ValueError:
        raise OperationError("malformed_operation", "an operation is a JSON object like "
                             '{"op":"subscribe","pairs":["BTC/USD"]}') from None
    if not isinstance(body, dict) or not isinstance(body.get("op"), str):
        raise OperationError("malformed_operation", 'an operation is a JSON object with a string "op"')
    op = body["op"]
    if op not in OPERATIONS:
        raise OperationError("unknown_operation", f"op must be one of {', '.join(OPERATIONS)}; got {op[:40]!r}")
    if op == "ping":
        return op, ()
    raw = body.get("pairs")
    if (not isinstance(raw, list) or not raw
            or not all(isinstance(item, str) and 0 < len(item) <= MAX_PAIR_TEXT for item in raw)):
        raise OperationError("malformed_pairs", f'{op} needs "pairs": a non-empty list of pair names like "BTC/USD"')
    pairs: list[str] = []
    for item in raw:
        try:
            name = catalog.resolve(item).name
        except PairError as exc:
            raise OperationError(exc.error, exc.detail) from None
        if name not in pairs:
            pairs.append(name)
    return op, tuple(pairs)
