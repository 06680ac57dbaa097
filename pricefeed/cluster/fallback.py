"""The fallback chain: which mode a worker is in, decided from what it can observe.

    live      ticks flow from the exchange WebSocket (ours, or the leader's per its heartbeat)
    redis     Redis works but no live ticks: serve the last prices Redis holds, flagged stale
    local     Redis unreachable: this worker runs its own exchange connection for its own clients
    degraded  neither: say so plainly (REST polling may still bring prices, labelled `rest`)

Hysteresis keeps the mode from flapping: `live` and `local` are held through a short gap,
Redis must be down for `local_after` before a worker goes local, and up (with
a live leader, or for `rejoin_after_anyway`) for `rejoin_after` before it
gives its own connection up again.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

LIVE, REDIS, LOCAL, DEGRADED = "live", "redis", "local", "degraded"


@dataclass(frozen=True)
class Observation:
    """What a worker can see at one moment."""

    redis_configured: bool
    redis_up: bool        # subscribed, and the last command succeeded
    leading: bool         # this worker holds the lease
    feed_live: bool       # this worker's own exchange connection delivers data
    leader_live: bool     # a leader's recent heartbeat says its exchange connection is live


class FallbackChain:
    def __init__(self, clock: Callable[[], float] = time.monotonic, hold_live: float = 2.0,
                 local_after: float = 2.0, rejoin_after: float = 2.0, rejoin_after_anyway: float = 10.0):
        self._clock = clock
        self.hold_live = hold_live
        self.local_after = local_after
        self.rejoin_after = rejoin_after
        self.rejoin_after_anyway = rejoin_after_anyway
        self.mode = DEGRADED
        self.local = False
        self._local_since: float | None = None
        self._redis_down_since: float | None = None
        self._redis_up_since: float | None = None
        self._not_live_since: float | None = clock()

    def update(self, seen: Observation) -> str:
        now = self._clock()
        self._track_redis(seen.redis_up, now)
        if seen.redis_configured:
            self._choose_tier(seen, now)
        own_feed = seen.leading or self.local or not seen.redis_configured
        live = seen.feed_live if own_feed else seen.leader_live
        if live:
            self._not_live_since = None
        elif self._not_live_since is None:
            self._not_live_since = now
        if self.local:
            # Our own connection gets a moment to come up before we call it degraded, and so
            # does a gap, as in `live`: the host's connection changing hands, or our own opening
            # because we were just elected while a sibling's served us (cluster/host_tier.py).
            connecting = self._local_since is not None and now - self._local_since < self.hold_live
            gap = self.mode == LOCAL and self._not_live_since is not None \
                and now - self._not_live_since < self.hold_live
            self.mode = LOCAL if seen.feed_live or connecting or gap else DEGRADED
        elif live:
            self.mode = LIVE
        elif self.mode == LIVE and self._not_live_since is not None and (
                now - self._not_live_since < self.hold_live or self._deciding_local(seen)):
            pass  # a moment's gap (reconnect, handover, Redis just lost): keep saying live
        elif seen.redis_configured and seen.redis_up:
            self.mode = REDIS
        else:
            self.mode = DEGRADED
        return self.mode

    def _deciding_local(self, seen: Observation) -> bool:
        """Redis was just lost and the local tier is about to start: no reason to announce a third mode."""
        return seen.redis_configured and not self.local and self._redis_down_since is not None

    def _track_redis(self, up: bool, now: float) -> None:
        if up:
            self._redis_down_since = None
            if self._redis_up_since is None:
                self._redis_up_since = now
        else:
            self._redis_up_since = None
            if self._redis_down_since is None:
                self._redis_down_since = now

    def _choose_tier(self, seen: Observation, now: float) -> None:
        if not self.local:
            if self._redis_down_since is not None and now - self._redis_down_since >= self.local_after:
                self.local = True
                self._local_since = now
            return
        if self._redis_up_since is None:
            return
        up_for = now - self._redis_up_since
        if up_for >= self.rejoin_after and (seen.leader_live or seen.leading):
            self.local = False
        elif up_for >= self.rejoin_after_anyway:
            # Redis is back but no leader is live (the exchange may be down for everyone):
            # stop holding one exchange connection per worker; the lease decides again.
            self.local = False
