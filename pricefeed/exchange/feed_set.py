"""The leader's exchange connections: one `BinanceFeed` per planned group of streams.

Past about 210 pairs the streams no longer fit one connection (stream_plan.py). The
set runs one full feed per group — each with its own watchdog, make-before-break
rotation, `serverShutdown` handling and backoff — and answers for all of them the
way the node asked a single feed before:

- `is_live()`: at least one connection delivers. The mode stays `live`; the pairs of
  a connection that is down are named by `down_pairs()` and go stale on their own,
  the others stay current. A partial outage is shown pair by pair, not as a mode;
- `all_live()` / `connected()`: every connection (health's `live` and `connected`);
- `stats`, `status()`: the counters summed, and each connection's own line.

What the exchange counts per IP is shared: one sliding window of attempts for the
whole set (`ReconnectPolicy.sibling`), the host's budget file, and one breaker.
Starting N connections is spaced (`START_SPACING_SECONDS` apart), and so are their
rotations (`ROTATION_STAGGER_SECONDS` apart), so the exchange never sees the set
arrive, or rotate, as a burst.
"""
from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import gevent

from pricefeed.exchange.access import AccessRefusals
from pricefeed.exchange.backoff import ReconnectPolicy
from pricefeed.exchange.connection import FeedStats
from pricefeed.exchange.feed import BinanceFeed
from pricefeed.exchange.protocol import MAX_STREAMS_PER_CONNECTION
from pricefeed.exchange.stream_plan import MAX_TARGET_CHARS, StreamGroup, pair_streams, plan_stream_groups, stream_root
from pricefeed.pairs import PairCatalog
from pricefeed.shown_urls import reduce_url
from pricefeed.ticks import PriceTick

log = logging.getLogger(__name__)

# Between two connections opened at start: a few handshakes a second, far inside Binance's
# 300 attempts per 5 minutes, and the second one learns from the first (a refusal, a ban).
START_SPACING_SECONDS = 0.25
# Each further connection rotates this much earlier (at most; less for short rotations).
ROTATION_STAGGER_SECONDS = 60.0
# Counters summed over the connections; the rest of the status is per connection.
_SUMMED = ("connects", "reconnects", "rotations", "connect_attempts", "connect_failures",
           "handshake_refusals", "silence_timeouts", "probes", "probes_answered", "messages",
           "malformed", "oversized_frames", "duplicates_dropped", "dedup_resets", "unused")
_WORST_AGE = ("connection_age_s", "last_message_age_s", "last_confirmed_age_s")


class FeedSet:
    """Every exchange connection of this deployment's leader, one per group of streams."""

    def __init__(self, url: str, catalog: PairCatalog, on_tick: Callable[[PriceTick], None], *,
                 policy: ReconnectPolicy, rotate_after: float = 23 * 3600.0,
                 max_streams: int = MAX_STREAMS_PER_CONNECTION, max_target_chars: int = MAX_TARGET_CHARS,
                 start_spacing: float = START_SPACING_SECONDS, access: AccessRefusals | None = None,
                 **feed_options: Any):
        self.url = stream_root(url) + "/stream"
        self.policy = policy
        self.start_spacing = start_spacing
        self._base_url = url
        self._catalog = catalog
        self._on_tick = on_tick
        self._rotate_after = rotate_after
        self._limits = {"max_streams": max_streams, "max_target_chars": max_target_chars}
        self._feed_options = feed_options
        self._numbering = itertools.count(1)
        self._access = access
        self.groups = self._plan()
        self.feeds = [self._new_feed(index, group) for index, group in enumerate(self.groups)]
        self._starter: gevent.Greenlet | None = None
        self._log_plan()

    def _plan(self) -> tuple[StreamGroup, ...]:
        return plan_stream_groups(self._base_url, pair_streams(self._catalog.pairs), **self._limits)

    def _new_feed(self, index: int, group: StreamGroup) -> BinanceFeed:
        stagger = min(ROTATION_STAGGER_SECONDS, 0.1 * self._rotate_after / max(1, len(self.groups)))
        feed = BinanceFeed(self._base_url, self._catalog, self._on_tick, group=group, numbering=self._numbering,
                           policy=self.policy if index == 0 else self.policy.sibling(),
                           rotate_after=self._rotate_after - index * stagger, access=self._access,
                           **self._feed_options)
        return feed

    def _log_plan(self) -> None:
        if len(self.feeds) > 1:
            log.info("upstream: %d pairs over %d connections (%s streams; targets of %s characters)",
                     len(self._catalog.pairs), len(self.feeds), "/".join(str(len(g.streams)) for g in self.groups),
                     "/".join(str(g.target_length) for g in self.groups))

    @property
    def access(self) -> AccessRefusals | None:
        """Where a 451 or 403 on any connection's handshake goes (exchange/access.py)."""
        return self._access

    def retarget(self) -> None:
        """The catalog's symbols changed (the catalogue was read, a pair was delisted): plan
        again. A connection whose streams are unchanged keeps running; one whose streams
        changed is replaced make-before-break; connections the new plan adds are opened and
        those it no longer needs are closed."""
        groups = self._plan()
        kept = self.feeds[:len(groups)]
        for feed, group in zip(kept, groups, strict=False):     # the plan may add connections
            if feed.group.streams != group.streams:
                feed.retarget(group)
        for feed in self.feeds[len(groups):]:
            feed.stop()
        self.groups = groups
        added = [self._new_feed(index, group) for index, group in enumerate(groups) if index >= len(kept)]
        self.feeds = kept + added
        if self.running:
            for feed in added:
                feed.start()
        self._log_plan()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        if self._starter is None:
            self._starter = gevent.spawn(self._start_spaced)

    def _start_spaced(self) -> None:
        for index, feed in enumerate(self.feeds):
            if index:
                gevent.sleep(self.start_spacing)
            feed.start()

    def stop(self, wait: float = 0.0) -> None:
        """Close every connection; with `wait`, return once all are closed (or `wait` passed)."""
        if self._starter is not None:
            self._starter.kill(block=False)
            self._starter = None
        readers = [conn.reader for feed in self.feeds for conn in (feed.active, feed.standby) if conn is not None]
        for feed in self.feeds:
            feed.stop()
        if wait and readers:
            gevent.joinall(readers, timeout=wait)

    @property
    def running(self) -> bool:
        return self._starter is not None

    # -- health --------------------------------------------------------------------

    def is_live(self) -> bool:
        """At least one connection delivers: the source is live (its down pairs go stale)."""
        return any(feed.is_live() for feed in self.feeds)

    def all_live(self) -> bool:
        return bool(self.feeds) and all(feed.is_live() for feed in self.feeds)

    def connected(self) -> bool:
        return bool(self.feeds) and self.open_connections() == len(self.feeds)

    def open_connections(self) -> int:
        """Connections of the set that are open now (a rotation's replacement not counted)."""
        return sum(1 for feed in self.feeds if feed.active is not None and not feed.active.ended)

    def data_age(self) -> float | None:
        """The oldest confirmation among the live connections (None when none is live)."""
        ages = [feed.data_age() for feed in self.feeds if feed.is_live()]
        return max((age for age in ages if age is not None), default=None)

    def down_pairs(self) -> list[str]:
        """The pairs whose connection does not deliver now; empty when all do (or none runs)."""
        if not self.running or not self.is_live():
            return []   # nothing delivers: the mode says so for every pair
        return [pair for feed in self.feeds if not feed.is_live() for pair in feed.group.pairs]

    @property
    def simulated(self) -> bool:
        return any(feed.simulated for feed in self.feeds)

    @property
    def stats(self) -> FeedStats:
        """Every connection's counters, summed (a fresh object: read it, do not keep it)."""
        total = FeedStats()
        for item in vars(total):
            values = [getattr(feed.stats, item) for feed in self.feeds]
            if isinstance(getattr(total, item), Counter):
                setattr(total, item, sum(values, Counter()))
            elif isinstance(getattr(total, item), int):
                setattr(total, item, sum(values))
        total.last_error = next((feed.stats.last_error for feed in self.feeds if feed.stats.last_error), "")
        return total

    def status(self) -> dict:
        lines = []
        for index, feed in enumerate(self.feeds):
            line = feed.status()
            line.pop("url", None)   # 8,000 characters each; the plan's numbers say what matters
            line.pop("host_attempt_budget", None)
            lines.append({"index": index, "first_pair": feed.group.pairs[0], "last_pair": feed.group.pairs[-1],
                          **line})
        down = self.down_pairs()
        rejected: Counter[str] = sum((Counter(line["rejected"]) for line in lines), Counter())
        status = {
            "url": reduce_url(self.url),
            "connections_planned": len(self.feeds),
            "streams": sum(len(group.streams) for group in self.groups),
            "pairs": sum(len(group.pairs) for group in self.groups),
            "connected": self.connected(),
            "live": self.all_live(),
            "simulated": self.simulated,
            "down_pairs": down,
            "rotating": any(line["rotating"] for line in lines),
            "attempts_last_5min": self.policy.attempts_in_window(),
            "host_attempt_budget": self.policy.host_budget.status() if self.policy.host_budget else None,
            "rejected": dict(rejected),
            "last_error": next((line["last_error"] for line in lines if line["last_error"]), ""),
            "connections": lines,
        }
        for key in _SUMMED:
            status[key] = sum(line[key] for line in lines)
        for key in _WORST_AGE:
            ages = [line[key] for line in lines if line[key] is not None]
            status[key] = max(ages) if ages and len(ages) == len(lines) else None
        return status
