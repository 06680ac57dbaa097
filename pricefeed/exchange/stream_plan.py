"""Which streams go on which exchange connection: each connection within the exchange's limits.

Binance takes at most 1,024 streams per connection, and handshakes whose request
target (`/stream?streams=a/b/c`) passes about 8,000 characters have been seen
refused (BINANCE.md). One combined URL holds about 210 pairs; the plan splits the
pairs into as many connections as those two limits need, packing them in the
configured order. Both streams of a pair stay on one connection, so a connection
that is down makes exactly its own pairs stale and no pair half-priced.

What counts is the target as sent: a symbol with non-ASCII letters travels
percent-encoded as UTF-8 (one letter `é` costs six characters), so lengths are
measured after encoding, never on the Python string.

Pure functions, no I/O: the plan is fixed at start from the configured pairs.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from pricefeed.exchange.protocol import MAX_STREAMS_PER_CONNECTION, stream_names
from pricefeed.pairs import Pair

# The longest request target others have seen Binance accept; not in its documentation.
MAX_TARGET_CHARS = 8000
# Characters a stream name may carry unencoded besides letters, digits and `_.-~`
# (`btcusdt@aggTrade`, `!miniTicker@arr`). `/` is the separator and is always encoded.
_SAFE_IN_NAME = "@!"


class PlanError(ValueError):
    """One pair's streams alone exceed a connection's limits (an absurdly long symbol)."""


@dataclass(frozen=True)
class StreamGroup:
    """The pairs and streams of one exchange connection, and the URL that opens it."""

    pairs: tuple[str, ...]      # pair names, in configured order
    streams: tuple[str, ...]    # stream names as the exchange spells them (not encoded)
    url: str                    # the combined-stream URL, names percent-encoded

    @property
    def target(self) -> str:
        """The handshake's request target: path and query, what the exchange measures."""
        parts = urlsplit(self.url)
        return f"{parts.path}?{parts.query}"

    @property
    def target_length(self) -> int:
        return len(self.target)


def stream_root(base_url: str) -> str:
    """The exchange's stream root: a base that already names /stream or /ws is trimmed."""
    parts = urlsplit(base_url.rstrip("/"))
    path = parts.path
    for suffix in ("/stream", "/ws"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return parts._replace(path=path, query="", fragment="").geturl().rstrip("/")


def encode_stream(name: str) -> str:
    """A stream name as it travels in the URL (UTF-8 percent-encoding for anything not plain)."""
    return quote(name, safe=_SAFE_IN_NAME)


def combined_url(root: str, streams: Iterable[str]) -> str:
    return f"{root}/stream?streams={'/'.join(encode_stream(name) for name in streams)}"


def pair_streams(pairs: Iterable[Pair]) -> list[tuple[str, list[str]]]:
    """Each pair with the streams the feed reads for it."""
    return [(pair.name, stream_names([pair])) for pair in pairs]


def plan_stream_groups(base_url: str, streams_by_pair: Sequence[tuple[str, Sequence[str]]], *,
                       max_streams: int = MAX_STREAMS_PER_CONNECTION,
                       max_target_chars: int = MAX_TARGET_CHARS) -> tuple[StreamGroup, ...]:
    """Split the pairs over as few connections as the limits allow, in order, evenly.

    Each connection carries at most `max_streams` streams and its request target is at
    most `max_target_chars` long. PlanError if a single pair cannot fit one connection.
    No pairs: no connection.

    Packing each connection full would leave the last one with a few pairs (500 pairs:
    210/210/80); with the same number of connections, the plan evens them out (167/167/166),
    so each keeps the same headroom under the limits.
    """
    fullest = _pack(base_url, streams_by_pair, max_streams, max_target_chars)
    count = len(fullest)
    if count < 2:
        return fullest
    root_length = len(urlsplit(stream_root(base_url)).path) + len("/stream?streams=")
    total_chars = sum(group.target_length - root_length for group in fullest)
    total_streams = sum(len(group.streams) for group in fullest)
    largest = max(sum(len(encode_stream(name)) + 1 for name in names) for _, names in streams_by_pair)
    widest = max(len(names) for _, names in streams_by_pair)
    even = _pack(base_url, streams_by_pair,
                 min(max_streams, -(-total_streams // count) + widest),
                 min(max_target_chars, root_length + -(-total_chars // count) + largest))
    return even if len(even) == count else fullest


def _pack(base_url: str, streams_by_pair: Sequence[tuple[str, Sequence[str]]], max_streams: int,
          max_target_chars: int) -> tuple[StreamGroup, ...]:
    """Fill each connection up to the limits before opening the next."""
    root = stream_root(base_url)
    fixed = len(urlsplit(root).path) + len("/stream?streams=")
    groups: list[StreamGroup] = []
    pairs: list[str] = []
    streams: list[str] = []
    length = fixed

    def close_group() -> None:
        groups.append(StreamGroup(tuple(pairs), tuple(streams), combined_url(root, streams)))

    for pair, names in streams_by_pair:
        # Each stream costs its encoded length, plus a `/` before every one but the first.
        cost = sum(len(encode_stream(name)) for name in names) + len(names)
        if len(names) > max_streams or fixed + cost - 1 > max_target_chars:
            raise PlanError(f"{pair}: its {len(names)} streams alone exceed one connection "
                            f"({max_streams} streams, a {max_target_chars}-character target)")
        if streams and (len(streams) + len(names) > max_streams or length + cost > max_target_chars):
            close_group()
            pairs, streams, length = [], [], fixed
        pairs.append(pair)
        streams.extend(names)
        length += cost - (0 if len(streams) > len(names) else 1)
    if streams:
        close_group()
    return tuple(groups)


def one_group(base_url: str, pairs: Iterable[Pair]) -> StreamGroup:
    """Every pair on one connection, whatever its size: a feed run on its own (tests, tools)."""
    items = pair_streams(pairs)
    return StreamGroup(tuple(name for name, _ in items), tuple(s for _, names in items for s in names),
                       combined_url(stream_root(base_url), (s for _, names in items for s in names)))
