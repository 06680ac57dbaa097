"""Closing a worker's streams in a spread, so a restart does not bring every browser back at once.

Closed all in one instant, every stream of an instance reconnects in the same
second, and the workers that take them over spend that second encoding
snapshots instead of writing prices. Instead the streams are closed in slices
at a bounded rate (about what a worker's admission gate takes in, so the
browsers return at the pace they are let back in) and within a window (a few
seconds, inside gunicorn's graceful_timeout: a worker with many streams closes
them faster rather than be killed), in random order, each first sent a `retry:`
with its own jittered delay, which the browser honours before it reconnects.
Until its turn, a stream keeps receiving prices: the hub stops admitting but
the flusher keeps flushing. The admission gate of the workers the browsers
return to paces whatever still arrives together.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import gevent

from pricefeed.delivery import sse
from pricefeed.delivery.hub import Hub

SLICE_S = 0.1            # one slice of closes every this many seconds


def farewell_retry(base_ms: int, jitter_ms: int) -> Callable[[], bytes]:
    """A `retry:` line per stream, its delay drawn from [base, base + jitter] ms."""
    return lambda: sse.retry(base_ms + random.randint(0, jitter_ms))


SUCCESSOR_POLL_S = 0.05


def wait_for_successor(successor_seen: Callable[[], bool], max_delay_s: float,
                       clock: Callable[[], float] = time.monotonic) -> float:
    """Keep streaming for up to `max_delay_s` before the closes begin — a reload's new workers are
    booting, and browsers sent back now would find nobody accepting — but no longer than it takes
    `successor_seen()` to say another worker has taken over (node.py: a worker of this host leads
    under a newer epoch, so it is up and past its boot). Returns the seconds waited."""
    started = clock()
    while clock() - started < max_delay_s and not successor_seen():
        gevent.sleep(min(SUCCESSOR_POLL_S, max(0.0, max_delay_s - (clock() - started))))
    return clock() - started


def close_spread(hub: Hub, max_window_s: float, closes_per_s: float, farewell: Callable[[], bytes],
                 clock: Callable[[], float] = time.monotonic) -> dict:
    """Close every open stream of `hub` at about `closes_per_s`, within `max_window_s` seconds,
    then close the hub. Returns what it did: streams closed, slices, and how long it took."""
    started = clock()
    clients = hub.begin_stopping()
    random.shuffle(clients)
    window_s = min(max_window_s, len(clients) / closes_per_s)
    slices = max(1, math.ceil(window_s / SLICE_S)) if clients else 1
    done = 0
    while done < len(clients):
        # As many as the time elapsed calls for, so a worker too busy to keep the slices'
        # pace still closes everything by the end of the window (graceful_timeout is near).
        elapsed = clock() - started + window_s / slices
        upto = len(clients) if elapsed >= window_s else math.ceil(len(clients) * elapsed / window_s)
        for client in clients[done:upto]:
            if not (client.gone or client.closed):
                client.close(farewell())
        done = upto
        if done < len(clients):
            gevent.sleep(window_s / slices)
    hub.close_all()    # any stream that slipped in, and the flusher's end
    return {"streams": len(clients), "slices": slices, "took_s": round(clock() - started, 3)}
