"""What `flask pricefeed status` reports: from Redis, or from a running instance's detailed health.

From Redis, the deployment as its shared keys show it (no instance needed): the lease
(`{prefix}:lease` → leader and epoch, with its TTL), the epoch counter, the last-prices
hash (`{prefix}:last` → each pair's price and age), and one leader heartbeat heard on the
ticks channel (whether the leader's upstream is live). Key names and parsing come from
the cluster classes themselves, so they cannot drift.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import redis

from pricefeed.cluster.lease import Lease, LeaseTimings
from pricefeed.cluster.redis_bus import HEARTBEAT, RedisBus
from pricefeed.cluster.redis_client import redis_client
from pricefeed.config import Config
from pricefeed.shown_urls import reduce_url


class StatusUnreadable(Exception):
    """Neither Redis nor the instance answered (or answered nonsense)."""


def status_from_health(health_url: str, token: str | None, timeout: float) -> dict[str, Any]:
    """The status as a running instance's detailed /health reports it (one worker's view)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(health_url, headers=headers), timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code != 503:
            raise StatusUnreadable(f"{health_url} answered {exc.code}") from None
        body = json.loads(exc.read())      # 503: down, but the document is there
    except (OSError, ValueError) as exc:
        raise StatusUnreadable(f"{health_url}: {exc}") from None
    leader = body.get("leader") or {}
    pairs = {}
    for name, entry in (body.get("pairs") or {}).items():
        # A pair without a price (none yet, or one the exchange does not list) has no price to show.
        pairs[name] = None if entry is None or entry.get("price") is None else {
            "price": entry.get("price"), "age_s": entry.get("age_s"), "source": entry.get("source"),
            "stale": entry.get("stale"), "status": entry.get("status")}
    return {"source": health_url, "mode": body.get("mode"), "status": body.get("status"),
            "leader": leader.get("worker"), "epoch": leader.get("epoch"),
            "worker": (body.get("worker") or {}).get("id"), "pairs": pairs}


def render(report: dict[str, Any]) -> str:
    lines = [f"source:  {report['source']}", f"mode:    {report['mode']}",
             f"leader:  {report.get('leader') or 'none'}", f"epoch:   {report.get('epoch')}"]
    if report.get("lease_ttl_s") is not None:
        lines.append(f"lease:   expires in {report['lease_ttl_s']:.1f} s unless renewed")
    if report.get("heartbeat"):
        beat = report["heartbeat"]
        lines.append(f"heartbeat: upstream {'live' if beat.get('live') else 'not live'}, "
                     f"data age {beat.get('data_age_s')} s")
    for name, entry in report["pairs"].items():
        if entry is None:
            lines.append(f"  {name:<12} no price yet")
        else:
            lines.append(f"  {name:<12} {entry['price']:>20}  age {entry['age_s']:.1f} s  {entry['source']}"
                         + (f"  {entry['status'].upper()}" if entry.get("status") in ("halted", "unlisted")
                            else "  STALE" if entry.get("stale") else ""))
    return "\n".join(lines)


def status_from_redis(config: Config, timeout: float) -> dict[str, Any]:
    cluster = config.cluster
    # The status command reads Redis only when PRICEFEED_REDIS_URL is set (commands.py checks first).
    assert cluster.redis_url is not None, "status_from_redis needs PRICEFEED_REDIS_URL"
    # The service's own client: Sentinel URLs too, every command run once.
    client = redis_client(cluster.redis_url, timeout, sentinel_username=cluster.redis_sentinel_username,
                          sentinel_password=cluster.redis_sentinel_password)
    lease = Lease(client, cluster.redis_prefix,
                  LeaseTimings(cluster.lease_ttl, cluster.lease_renew_interval, cluster.lease_renew_deadline))
    bus = RedisBus(client, cluster.redis_prefix, lease, cluster.bus_heartbeat_interval)
    try:
        holder = lease.current_holder()
        ttl_ms = client.pttl(lease.key) if holder else None
        epoch_counter = client.get(lease.epoch_key)
        ticks = bus.last_prices()
        heartbeat = _one_heartbeat(client, bus.channel, bus.quiet_after) if holder else None
    except redis.RedisError as exc:
        raise StatusUnreadable(f"Redis {reduce_url(cluster.redis_url)}: {exc}") from None
    finally:
        client.close()
    now_ms = int(time.time() * 1000)
    latest = {tick.pair: tick for tick in ticks}
    pairs = {}
    for name in config.upstream.pairs:
        tick = latest.get(name)
        pairs[name] = None if tick is None else {
            "price": tick.price, "age_s": round(max(0, now_ms - tick.ts) / 1000, 3), "source": tick.source,
            "stale": (now_ms - tick.ts) / 1000 > config.delivery.stale_after, "epoch": tick.epoch}
    # The node's own mode names (cluster/fallback.py): seen from Redis, either the leader's
    # heartbeat says its upstream is live, or Redis works without live ticks.
    mode = "live" if holder is not None and heartbeat is not None and heartbeat.get("live") else "redis"
    return {"source": f"{reduce_url(cluster.redis_url)} (prefix {cluster.redis_prefix})", "mode": mode,
            "leader": holder[0] if holder else None, "epoch": holder[1] if holder else None,
            "epoch_counter": int(epoch_counter) if epoch_counter else None,
            "lease_ttl_s": ttl_ms / 1000 if ttl_ms and ttl_ms > 0 else None,
            "heartbeat": heartbeat, "pairs": pairs}


def _one_heartbeat(client: redis.Redis, channel: str, wait: float) -> dict | None:
    """The next leader heartbeat on the ticks channel, or None after `wait` seconds."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=left)
            if message is None or message.get("type") != "message":
                continue
            data = message["data"]
            text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
            if text.startswith(HEARTBEAT):
                try:
                    body = json.loads(text[1:])
                except ValueError:
                    continue
                if isinstance(body, dict):
                    return body
        return None
    finally:
        pubsub.close()
