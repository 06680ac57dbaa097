"""Runs the real upstream client (BinanceFeed) alone in a gevent-patched process.

    python -m tests.support.feed_harness <upstream ws url> <pairs> [setting=value ...]

Prints one JSON line per tick ({"tick": ...}) with the exchange trade id that
produced it, and a status line every 0.2 s ({"status": ...}), so a test can
check exactly what the client emitted — every trade, in order, without the
hub's conflation in between: gaps and duplicates show in the trade ids.
"""
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from pricefeed.exchange.backoff import ReconnectPolicy  # noqa: E402
from pricefeed.exchange.feed import BinanceFeed  # noqa: E402
from pricefeed.pairs import PairCatalog  # noqa: E402


class ObservedFeed(BinanceFeed):
    """The real client; only remembers which trade produced the tick being emitted."""

    current_trade_id = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        on_trade = self.frames._on_trade

        def observed(conn, trade):
            self.current_trade_id = trade.trade_id
            on_trade(conn, trade)
            self.current_trade_id = None
        self.frames._on_trade = observed  # type: ignore[method-assign]  # this harness's feed only


def main() -> None:
    url, pairs = sys.argv[1], sys.argv[2].split(",")
    options = dict(arg.split("=", 1) for arg in sys.argv[3:])

    def number(key: str, default: float) -> float:
        return float(options.get(key, default))

    def emit(tick):
        print(json.dumps({"tick": {"pair": tick.pair, "symbol": tick.symbol, "price": tick.price,
                                   "ts": tick.ts, "source": tick.source,
                                   "trade_id": feed.current_trade_id}}), flush=True)

    feed = ObservedFeed(
        url, PairCatalog(pairs), emit,
        silence_timeout=number("silence_timeout", 15), connect_timeout=number("connect_timeout", 5),
        rotate_after=number("rotate_after", 3600),
        probe_after=number("probe_after", 0) or None, probe_timeout=number("probe_timeout", 1.0),
        max_frame_bytes=int(number("max_frame_bytes", 1 << 20)),
        policy=ReconnectPolicy(number("backoff_base", 0.1), number("backoff_cap", 1),
                               int(number("max_attempts", 100))))
    feed.start()
    while True:
        status = feed.status()
        status["t"] = time.time()
        print(json.dumps({"status": status}), flush=True)
        gevent.sleep(0.2)


if __name__ == "__main__":
    main()
