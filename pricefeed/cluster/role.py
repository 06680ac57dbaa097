"""A worker's role: whether it runs an exchange connection, where that connection's ticks
go, and what it does with its host's lock — decided from what it can see, without I/O.

The inputs are read by the node at one moment (`Situation`); the decisions are pure
functions of them, so every rule below is a row of a table in tests/unit/test_role.py.

Without Redis a worker is its own leader: its feed always runs, its ticks go to the
in-process bus. With Redis:
- the lease holder runs the feed and publishes through the bus (whose fenced script
  refuses it if the lease is gone), even before its local tier formally ends, so
  followers that rejoin hear it;
- a holder past its renew deadline (`lease_lapsed`: its election still says it leads,
  but its renewal is stuck on a Redis that stopped answering) no longer holds the lease:
  the bus would drop its ticks, so they go to its own browsers and its host's;
- a worker in the local tier (or whose Redis calls fail) runs the host's one local-tier
  connection if it holds the host's lock, and serves its ticks to its own hub;
- a leader cut off from Redis keeps its connection rather than dropping it and
  reopening it a moment later as the local tier;
- once Redis is back and a live leader's ticks reach this worker, its own feed's ticks
  are redundant and dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

# Where a tick of our own feed (or REST poller) goes.
BUS, LOCAL, DROP = "bus", "local", "drop"
# What to do with the host's lock (cluster/host_tier.py: one local-tier connection per host).
KEEP, RELEASE = "keep", "release"
CLAIM = "claim"                  # claim it; run the feed whether or not we get it (we lead)
CLAIM_TO_RUN = "claim_to_run"    # claim it; run the feed only if we get it
# Whose exchange connection the prices this worker serves come from.
OWN, HOST, LEADER = "own", "host", "leader"


@dataclass(frozen=True, slots=True)
class Situation:
    """What a worker sees at one moment."""

    redis_configured: bool
    leading: bool = True           # the election says this worker holds the lease
    lease_lapsed: bool = False     # ... but its renew deadline has passed
    redis_failing: bool = False    # the election's last Redis call failed
    local_tier: bool = False       # the fallback chain serves the local tier
    feed_running: bool = False     # our exchange connection is open (or opening)
    bus_subscribed: bool = False   # our bus subscription is up
    leader_live: bool = False      # another worker leads, its heartbeat is recent and says its feed is live
    host_tier: bool = False        # the host shares one local-tier connection (with Redis)

    @property
    def cut_off(self) -> bool:
        """Redis stopped answering us, or our lease lapsed while our election waits on it."""
        return self.redis_configured and (self.redis_failing or self.lease_lapsed)

    @property
    def publishes_locally(self) -> bool:
        """Ticks of our own feed go to our own hub, not the bus."""
        if not self.redis_configured:
            return False
        if self.leading:
            return self.lease_lapsed
        return self.local_tier or self.redis_failing

    @property
    def leader_delivering(self) -> bool:
        """Redis is back and a live leader's ticks reach us: our own feed's are redundant."""
        return self.bus_subscribed and self.leader_live


@dataclass(frozen=True, slots=True)
class FeedPlan:
    """Whether our exchange connection should run, and what to do with the host's lock first."""

    run: bool
    host_lock: str = KEEP


def feed_plan(seen: Situation) -> FeedPlan:
    """Run our exchange connection exactly while we lead or serve the local tier (or, cut off
    from Redis, while it already runs); outside the lease, one connection per host."""
    want = seen.leading or seen.local_tier or (seen.cut_off and seen.feed_running)
    if not seen.host_tier:
        return FeedPlan(want)
    if want and (seen.cut_off or not seen.leading):
        # The worker holding the host's lock runs the host's connection and shares its ticks;
        # the others serve theirs. A holder that becomes leader keeps the lock (and keeps
        # telling its siblings its connection is live) until its connection stops: a sibling
        # still in the local tier must not open one of its own in the seconds before it rejoins.
        # A leader cut off from Redis claims the lock at once, before its election demotes it:
        # it keeps its connection, so a sibling that goes local must take its ticks, not open a
        # second connection on this host. Claimed only once Redis fails: while it works, the
        # lock is the local tier's alone.
        return FeedPlan(True, CLAIM if seen.leading else CLAIM_TO_RUN)
    if not want:
        return FeedPlan(False, RELEASE)
    return FeedPlan(True)


def tick_route(seen: Situation) -> str:
    """Where a tick of our own feed (or REST poller) goes: the bus while we lead, our own hub
    in the local tier, nowhere while a live leader's ticks reach us anyway."""
    if not seen.publishes_locally:
        return BUS
    return DROP if seen.leader_delivering else LOCAL


def takes_sibling_ticks(seen: Situation) -> bool:
    """A tick of the host's local-tier connection, run by a sibling worker, goes to our hub."""
    return seen.publishes_locally and not seen.feed_running and not seen.leader_delivering


def price_source(seen: Situation) -> str:
    """Whose exchange connection the prices we serve come from: ours (leading, local tier, no
    Redis), the host's (the local tier run by a sibling), or the leader's (per its heartbeat)."""
    if not seen.redis_configured or seen.leading or seen.local_tier:
        return HOST if seen.host_tier and not seen.feed_running else OWN
    return LEADER
