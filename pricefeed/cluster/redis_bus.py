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
from collections import Counter
from collections.abc import Callable

import gevent
import gevent.event
import pybreaker
import redis

import pricefeed.validation as validation
from pricefeed.cluster.bus import Bus, Deliver
from pricefeed.cluster.lease import Lease
from pricefeed.cluster.redis_client import command_client  # noqa: F401 - re-exported for callers
from pricefeed.logs import RateLimitedLog, outside
from pricefeed.ticks import PriceTick
from pricefeed.validation import Rejected

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


class RedisBus(Bus):
    def __init__(self, client: redis.Redis, prefix: str, lease: Lease, heartbeat_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, breaker: pybreaker.CircuitBreaker | None = None,
                 max_clock_skew_ms: int | None = None, on_release: Callable[[], None] | None = None,
                 on_heartbeat: Callable[[dict], None] | None = None):
        super().__init__(on_release, on_heartbeat)
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
        # Ticks read back from Redis are checked like the exchange's (None: no time window).
        self.max_clock_skew_ms = max_clock_skew_ms
        self.rejected: Counter[str] = Counter()
        self._rejections_log = RateLimitedLog(log)

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
        epoch = self.lease.epoch        # held() leaves it as it is when it says True
        if epoch is None or not self.lease.held():
            return None
        if epoch != self._seq_epoch:
            self._seq_epoch, self._seq = epoch, itertools.count(1)
        stamped = tick.stamped(epoch, next(self._seq))
        if self._run_publish(stamped.pair, TICK + stamped.to_json()):
            self.published += 1
            return stamped
        return None

    def publish_many(self, ticks: list[PriceTick]) -> list[PriceTick | None]:
        """Publish ticks in order in one round trip (a pipeline of the fenced script): with 100 ms
        to Redis, one round trip per tick would cap the leader at 10 ticks/s."""
        token, epoch = self.lease.token, self.lease.epoch
        if not ticks or token is None or epoch is None or not self.lease.held():
            return [None] * len(ticks)
        if epoch != self._seq_epoch:
            self._seq_epoch, self._seq = epoch, itertools.count(1)
        stamped = [tick.stamped(epoch, next(self._seq)) for tick in ticks]
        results = self._guarded(self._pipelined_publish, token, stamped)
        published: list[PriceTick | None] = []
        for tick, result in zip(stamped, results, strict=True):
            if isinstance(result, Exception):
                raise result
            if result == -1:
                self.fenced += 1
                published.append(None)
            else:
                self.published += 1
                published.append(tick)
        if None in published:
            self.lease.demote("publish fenced out: the lease holds another epoch")
        return published

    def _pipelined_publish(self, token: str, ticks: list[PriceTick]) -> list:
        def run(batch: list[PriceTick]) -> list:
            pipe = self.client.pipeline(transaction=False)
            for tick in batch:
                # EVALSHA straight, not the Script object: that would add a SCRIPT EXISTS round trip.
                pipe.evalsha(self._publish.sha, 2, self.lease.key, self.last_key, token, self.channel,
                             tick.pair, TICK + tick.to_json())
            return pipe.execute(raise_on_error=False)
        results = run(ticks)
        missing = [i for i, r in enumerate(results) if isinstance(r, redis.exceptions.NoScriptError)]
        if missing:
            # A fresh master (a restart, a promoted replica) has no scripts; those calls never ran.
            self.client.script_load(PUBLISH)
            for index, result in zip(missing, run([ticks[i] for i in missing]), strict=True):
                results[index] = result
        return results

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
                ticks.append(PriceTick.from_json(raw[1:], self.max_clock_skew_ms))
            except (ValueError, TypeError) as exc:
                self._reject(exc, raw)
        return sorted(ticks, key=lambda t: (t.epoch, t.seq))

    def status(self) -> dict:
        now = self._clock()
        return {
            "backend": "redis", "channel": self.channel, "subscribed": self.subscribed,
            "subscriptions": self.subscriptions,
            "last_message_age_s": None if self.last_message_at is None else round(now - self.last_message_at, 3),
            "epoch": self.lease.epoch, "published": self.published, "fenced": self.fenced,
            "received": self.received, "malformed": self.malformed, "rejected": dict(self.rejected),
        }

    def _reject(self, exc: Exception, raw: bytes | str) -> None:
        """One bad entry or message: counted by reason, logged (rate-limited), skipped."""
        self.malformed += 1
        reason = exc.reason if isinstance(exc, Rejected) else "malformed"
        self.rejected[reason] += 1
        self._rejections_log.warning(reason, "bus: rejected (%s: %s): %s", reason, outside(str(exc), 120),
                                     outside(raw, 120))

    def _deliver_safely(self, tick: PriceTick) -> None:
        """No single tick can end the subscription, whatever the hub makes of it."""
        if self._deliver is None:
            return
        try:
            self._deliver(tick)
        except Exception as exc:  # noqa: BLE001 - a consumer bug must cost one tick, not the subscription
            self.rejected["delivery_failed"] += 1
            self._rejections_log.warning("deliver_failed", "bus: delivering %s failed (%s: %s); skipped", tick.pair,
                                         type(exc).__name__, outside(str(exc), 120))

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
        for tick in self.last_prices():
            self._deliver_safely(tick)

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
                self._deliver_safely(PriceTick.from_json(text[1:], self.max_clock_skew_ms))
            elif text.startswith(HEARTBEAT):
                heartbeat = _checked_heartbeat(json.loads(text[1:]))
                self._leader_heartbeat = heartbeat
                self.leader_heartbeat_at = self._clock()
                self.on_heartbeat(heartbeat)
            else:
                raise ValueError("unknown message kind")
        except (ValueError, TypeError, RecursionError) as exc:
            self._reject(exc, text)


def _checked_heartbeat(body: object) -> dict:
    """The leader's heartbeat, with the fields the node computes with checked (a 400-digit age
    would raise in every monitor pass of every worker)."""
    if not isinstance(body, dict):
        raise Rejected("bad_shape", "heartbeat is not an object")
    age = body.get("data_age_s")
    if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 <= age < 1e9):
        raise Rejected("heartbeat_shape", "data_age_s is not a small non-negative number")
    if body.get("epoch") is not None:
        validation.identifier(body["epoch"], "epoch")
    worker = body.get("worker")
    if worker is not None and (not isinstance(worker, str) or len(worker) > 256):
        raise Rejected("heartbeat_shape", "worker is not a short string")
    return body
