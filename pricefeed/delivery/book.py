"""What the hub holds and hands the flusher: each pair's latest price (framed per transport) and batches."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pricefeed.delivery import sse, ws_frames
from pricefeed.delivery.stream_client import StreamClient
from pricefeed.ticks import PriceTick


@dataclass(slots=True)
class BookEntry:
    """The latest tick of a pair, its encoded frame, and when it was last known to be current."""

    tick: PriceTick
    frame: tuple[bytes, ...]   # the price event, framed for each transport (index: stream_client.SSE, ...)
    confirmed_at: float        # monotonic: when this price was last known to be the current one
    version: int = 0           # the hub's version when this frame was made
    # Replaced by the next tick from the bus whatever that tick's id: a price from our own
    # feed in the local tier, or one from before an epoch rebase.
    provisional: bool = False


@dataclass(slots=True)
class Batch:
    """What one flush writes, fixed when the flush starts: ticks arriving meanwhile go in the next."""

    version: int
    book: dict[str, tuple[int, tuple[bytes, ...]]]   # pair -> (version, framings) of its latest price
    status: tuple[int, tuple[bytes, ...] | None]     # (version, framings) of the latest status event
    ping_round: int
    clients: list[StreamClient]
    # Immediate pace: every price frame since the previous flush, in order, and that flush's
    # version. None in the conflated pace, or when too many piled up (latest-per-pair then).
    journal: list[tuple[int, str, tuple[bytes, ...]]] | None = None
    journal_from: int = 0
    cache: dict = field(default_factory=dict)   # subscription and position -> shared chunk
    due_at: float | None = None                 # every-tick batch: when its oldest tick arrived (lag)
    # The hub's recent (version, pair, exchange ts) of ticks, newest last: how many ticks a chunk of
    # latest prices stands for, and how old the ticks written were (for metrics). Read within one
    # call, never across a yield.
    tick_log: deque[tuple[int, str, int]] | None = None
    tick_index: dict[str, list[int]] | None = None   # pair -> its versions in tick_log, newest first
    tick_index_floor: int = -1                         # tick_index holds every version above this


def framings(name: str, body: Any, event_id: str | None = None) -> tuple[bytes, ...]:
    """One event in every transport's framing (indexed by stream_client.SSE / WEBSOCKET); the
    body is encoded to JSON once."""
    data = sse.encode_json(body)
    return (sse.event_json(name, data, event_id), ws_frames.event_json(name, data, event_id))
