"""FrameHandler: a frame of many events yields to other greenlets; bad events cost only themselves."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import gevent

from pricefeed.exchange.connection import FeedStats, UpstreamConnection
from pricefeed.exchange.frames import EVENTS_PER_YIELD, FrameHandler
from pricefeed.pairs import PairCatalog
from tests.support.doubles import stand_in

PAIRS = [f"C{i}/USD" for i in range(300)]


def handler(ticks: list) -> FrameHandler:
    return FrameHandler(PairCatalog(PAIRS), ticks.append, FeedStats(), 86_400_000, False,
                        on_first_data=lambda: None, on_shutdown=lambda: None)


def connection() -> UpstreamConnection:
    # The attributes of an UpstreamConnection the handler reads (no socket needed for frames).
    return stand_in(UpstreamConnection, SimpleNamespace(number=1, simulated=False, first_data_at=1.0, last_data_at=2.0,
                           shutdown_announced=False))


def array_frame(count: int, bad_every: int = 0) -> bytes:
    now = int(time.time() * 1000)
    events = [{"e": "24hrMiniTicker", "E": now, "s": f"C{i}USDT", "o": "1.0",
               "c": "-1" if bad_every and i % bad_every == 0 else f"{i + 1}.5"} for i in range(count)]
    return json.dumps({"stream": "!miniTicker@arr", "data": events}).encode()


def test_a_frame_of_many_events_lets_other_greenlets_run_while_it_is_handled():
    ticks: list = []
    seen_at: list[int] = []
    other = gevent.spawn(lambda: seen_at.append(len(ticks)))
    handler(ticks).on_data(connection(), array_frame(300), False)
    assert other.dead and seen_at and seen_at[0] < 300, "the other greenlet waited for the whole frame"
    assert seen_at[0] >= EVENTS_PER_YIELD - 1
    assert len(ticks) == 300


def test_bad_events_in_an_array_are_counted_and_the_rest_delivered():
    ticks: list = []
    frames = handler(ticks)
    frames.on_data(connection(), array_frame(300, bad_every=10), False)
    assert len(ticks) == 270 and frames.stats.rejected == {"price_shape": 30}
