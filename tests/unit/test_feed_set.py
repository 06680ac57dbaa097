"""The leader's set of exchange connections, as planned (no sockets: tests/integration/test_many_pairs.py runs it)."""
from __future__ import annotations

from pricefeed.exchange.backoff import ReconnectPolicy
from pricefeed.exchange.feed_set import FeedSet
from pricefeed.pairs import PairCatalog

BINANCE = "wss://stream.binance.com:9443"


def feed_set(count: int, **options) -> FeedSet:
    catalog = PairCatalog([f"P{index:03d}/USDT" for index in range(count)])
    return FeedSet(BINANCE, catalog, lambda tick: None, policy=ReconnectPolicy(0.5, 30, 100), **options)


def test_up_to_about_200_pairs_is_one_connection_as_before():
    feeds = feed_set(5)
    assert len(feeds.feeds) == 1
    assert feeds.feeds[0].url == ("wss://stream.binance.com:9443/stream?streams="
                                  + "/".join(f"p{i:03d}usdt@aggTrade/p{i:03d}usdt@miniTicker" for i in range(5)))
    assert feeds.feeds[0].rotate_after == 23 * 3600.0


def test_500_pairs_are_three_feeds_each_reading_its_own_group():
    feeds = feed_set(500)
    assert len(feeds.feeds) == 3
    assert [feed.group for feed in feeds.feeds] == list(feeds.groups)
    assert all(feed.group.target_length <= 8000 and len(feed.group.streams) <= 1024 for feed in feeds.feeds)
    status = feeds.status()
    assert status["connections_planned"] == 3 and status["pairs"] == 500 and status["streams"] == 1000
    assert status["connected"] is False and status["down_pairs"] == []
    assert [line["pairs"] for line in status["connections"]] == [len(g.pairs) for g in feeds.groups]


def test_the_set_shares_one_attempt_window_but_each_connection_backs_off_on_its_own():
    first, second, _ = (feed.policy for feed in feed_set(500).feeds)
    second.attempted()
    second.failed()
    assert first.attempts_in_window() == 1       # the exchange counts attempts per IP
    assert second.failures == 1 and first.failures == 0


def test_rotations_are_staggered_so_the_set_never_rotates_at_once():
    feeds = feed_set(500, rotate_after=3600.0)
    after = [feed.rotate_after for feed in feeds.feeds]
    assert after == sorted(after, reverse=True) and len(set(after)) == 3
    assert min(after) >= 0.9 * 3600.0


def test_the_streams_per_connection_setting_splits_a_few_pairs():
    feeds = feed_set(6, max_streams=4)
    assert [feed.group.pairs for feed in feeds.feeds] == [("P000/USDT", "P001/USDT"), ("P002/USDT", "P003/USDT"),
                                                          ("P004/USDT", "P005/USDT")]
