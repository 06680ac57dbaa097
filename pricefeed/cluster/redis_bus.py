"""RedisBus: the bus for a deployment — one leader publishes, every worker subscribes once.

Publishing runs one Lua script per tick that checks the lease still holds the
leader's `owner:epoch`, stores the tick as the pair's last price, and
publishes it: one Redis round trip per tick, whatever the number of browsers.

Each worker holds exactly one pub/sub connection, read with a timeout. The
leader publishes a heartbeat every second; a subscription that hears nothing
pings Redis through the same connection, and one that cannot get an answer is
replaced. Pub/sub delivers at most once, so after every (re)subscribe the last
prices are re-read from Redis: no browser keeps a price older than Redis has.
"""
from __future__ import annotations

import itertools
import json
import logging
import random
import time
from typing import Callable

import gevent
import gevent.event
import pybreaker
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pricefeed.cluster.bus import Bus, Deliver
from pricefeed.cluster.lease import Lease
from pricefeed.logs import RateLimitedLog, outside
from pricefeed.ticks import PriceTick

log = logging.getLogger(__name__)

# KEYS: lease, last-prices hash.  ARGV: token, channel, pair ('' for a heartbeat), message.
# Returns -1 when fenced out (the lease is not ours), else the number of receivers.
PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
end
return redis.call('PUBLISH', ARGV[2], ARGV[4])
"""

TICK, HEARTBEAT = "T", "H"
RESUBSCRIBE_BACKOFF_BASE = 0.1
RESUBSCRIBE_BACKOFF_CAP = 2.0


def command_client(url: str, timeout: float = 1.0) -> redis.Redis:
    """A client whose commands run exactly once: no silent retries (TRAPS.md: PUBLISH and SET NX)."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), 0), health_check_interval=0)


class RedisBus(Bus):
    def __init__(self, client: redis.Redis, prefix: str, lease: Lease, heartbeat_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, breaker: pybreaker.CircuitBreaker | None = None):
        super().__init__()
        self.client = client
        self.breaker = breaker
        self.lease = lease
        self.channel = f"{prefix}:ticks"
        self.last_key = f"{prefix}:last"
        self.heartbeat_interval = heartbeat_interval
        # A subscription that has heard nothing (not even the leader's heartbeat) for this
        # long is checked with a PING through the same connection.
        self.quiet_after = 2.5 * heartbeat_interval
        self._clock = clock
        self._publish = client.register_script(PUBLISH)
        self._deliver: Deliver | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._seq = itertools.count(1)
        self._seq_epoch: int | None = None
        self._subscribed = False
        self.subscriptions = 0
        self.last_message_at: float | None = None
        self._leader_heartbeat: dict | None = None
        self.leader_heartbeat_at: float | None = None
        self.published = 0
        self.fenced = 0
        self.received = 0
        self.malformed = 0
        self._warnings = RateLimitedLog(log, 10.0)

    # -- Bus -------------------------------------------------------------------------

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._subscribe_forever)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        self._subscribed = False

    def publish(self, tick: PriceTick) -> PriceTick | None:
        if not self.lease.held():
            return None
        epoch = self.lease.epoch
        if epoch != self._seq_epoch:
            self._seq_epoch, self._seq = epoch, itertools.count(1)
        stamped = tick.stamped(epoch, next(self._seq))
        if self._run_publish(stamped.pair, TICK + stamped.to_json()):
            self.published += 1
            return stamped
        return None

    def publish_heartbeat(self, body: dict) -> bool:
        """The leader's sign of life (and of its upstream's) to every subscriber."""
        if not self.lease.held():
            return False
        return self._run_publish("", HEARTBEAT + json.dumps(body, separators=(",", ":")))

    def _guarded(self, command: Callable, *args, **kwargs):
        """One short Redis command, through the breaker: a dead Redis fails fast, not after a timeout."""
        if self.breaker is None:
            return command(*args, **kwargs)
        return self.breaker.call(command, *args, **kwargs)

    def last_prices(self) -> list[PriceTick]:
        ticks = []
        for raw in self._guarded(self.client.hvals, self.last_key):
            try:
                ticks.append(PriceTick.from_json(raw[1:]))
            except (ValueError, TypeError):
                self.malformed += 1
        return sorted(ticks, key=lambda t: (t.epoch, t.seq))

    def status(self) -> dict:
        now = self._clock()
        return {
            "backend": "redis", "channel": self.channel, "subscribed": self.subscribed,
            "subscriptions": self.subscriptions,
            "last_message_age_s": None if self.last_message_at is None else round(now - self.last_message_at, 3),
            "epoch": self.lease.epoch, "published": self.published, "fenced": self.fenced,
            "received": self.received, "malformed": self.malformed,
        }

    # -- publishing --------------------------------------------------------------------

    def _run_publish(self, pair: str, message: str) -> bool:
        token = self.lease.token
        if token is None:
            return False
        result = self._guarded(self._publish, keys=[self.lease.key, self.last_key],
                               args=[token, self.channel, pair, message])
        if result == -1:
            self.fenced += 1
            self.lease.demote("publish fenced out: the lease holds another epoch")
            return False
        return True

    # -- subscribing -------------------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    @property
    def leader_heartbeat(self) -> dict | None:
        return self._leader_heartbeat

    def heartbeat_age(self) -> float:
        at = self.leader_heartbeat_at
        return 0.0 if at is None else self._clock() - at

    def leader_alive(self) -> bool:
        """A leader's heartbeat arrived recently."""
        at = self.leader_heartbeat_at
        return at is not None and self._clock() - at < self.quiet_after

    def _subscribe_forever(self) -> None:
        failures = 0
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                self._guarded(pubsub.subscribe, self.channel, self.lease.events_channel)
                self._subscribed = True
                self.subscriptions += 1
                failures = 0
                self._reload_last_prices()
                self._listen(pubsub)
            except gevent.GreenletExit:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: drop this subscription, make another
                failures += 1
                log.warning("bus: subscription lost (%s: %s)", type(exc).__name__, exc)
            finally:
                self._subscribed = False
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001
                    pass
            ceiling = min(RESUBSCRIBE_BACKOFF_CAP, RESUBSCRIBE_BACKOFF_BASE * 2 ** min(failures, 10))
            gevent.sleep(random.uniform(0, ceiling))

    def _reload_last_prices(self) -> None:
        deliver = self._deliver
        for tick in self.last_prices():
            if deliver is not None:
                deliver(tick)

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        heard_at = self._clock()
        pinged = False
        while True:
            message = pubsub.get_message(timeout=min(0.5, self.heartbeat_interval))
            now = self._clock()
            if message is not None:
                heard_at, pinged = now, False
                self.last_message_at = now
                if message["type"] == "message":
                    self._on_message(message["channel"], message["data"])
                continue
            if now - heard_at < self.quiet_after:
                continue
            if not pinged:
                pubsub.ping()
                pinged = True
            elif now - heard_at > 2 * self.quiet_after:
                raise ConnectionError(f"no answer on the subscription for {now - heard_at:.1f}s")

    def _on_message(self, channel: bytes, data: bytes) -> None:
        self.received += 1
        text = data.decode("utf-8", "replace")
        if channel.decode() == self.lease.events_channel:
            if text.startswith("released"):
                # That leader is gone now, not when its last heartbeat goes quiet.
                self._leader_heartbeat = self.leader_heartbeat_at = None
                self.on_release()
            return
        try:
            if text.startswith(TICK):
                tick = PriceTick.from_json(text[1:])
                if self._deliver is not None:
                    self._deliver(tick)
            elif text.startswith(HEARTBEAT):
                heartbeat = json.loads(text[1:])
                if not isinstance(heartbeat, dict):
                    raise ValueError("heartbeat is not an object")
                self._leader_heartbeat = heartbeat
                self.leader_heartbeat_at = self._clock()
                self.on_heartbeat(heartbeat)
            else:
                raise ValueError("unknown message kind")
        except (ValueError, TypeError) as exc:
            self.malformed += 1
            self._warnings.warning("malformed", "bus: malformed message #%d skipped (%s): %s",
                                   self.malformed, outside(str(exc)), outside(text))
