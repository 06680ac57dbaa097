"""Feeds Flask-SSE from the exchange: the baseline's counterpart of pricefeed's leader.

    FLASK_SSE_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m bench.flask_sse_bridge \\
        --upstream ws://127.0.0.1:9900 --channels "BTC/USD,ETH/USD,SOL/USD;ETH/USD,SOL/USD,BNB/USD" --max-seconds 300

One websocket-client connection to the exchange's combined aggTrade streams of
every pair the channels name. Each trade is published once to every channel
that carries its pair, as Flask-SSE's `sse.publish(payload, type="price",
channel=C)` would, with a payload shaped like pricefeed's price event:
`{"pair","symbol","price","ts"}`, `price` the exchange's decimal string, `ts`
its event time `E` (as pricefeed stamps it). The payload goes in pre-encoded:
Flask-SSE passes a string through rather than re-encoding it for every client,
its cheapest path.

`--publish pooled` (the default) sends exactly the bytes `sse.publish` sends,
over one Redis connection. `--publish sse.publish` calls Flask-SSE's own
`sse.publish`, which opens a new Redis connection for every call (its `redis`
property builds a client from the URL each time): at 300 publishes/s that alone
took about half a core here, which on a 2-core machine the server under test
would lose. bench/README.md has the figures.

Prints `bridging` once connected and, on exit, one JSON line of counts. Stops
by itself after `--max-seconds`, on SIGTERM, or when the exchange closes.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import redis
import websocket
from flask import json as flask_json
from flask_sse import Message, sse

from bench.flask_sse_app import REDIS_URL_VARIABLE, create_app
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
PUBLISH_MODES = ("pooled", "sse.publish")


def symbol_of(pair: str) -> str:
    """`BTC/USD` -> `BTCUSDT`: the quote USD is the exchange's USDT, as pricefeed maps it by default."""
    base, quote = pair.split("/")
    return base + ("USDT" if quote == "USD" else quote)


def publisher(mode: str, redis_url: str) -> Callable[[str, str], None]:
    """`publish(payload, channel)`. Call it inside the app context (Flask-SSE's JSON is the app's)."""
    if mode == "sse.publish":
        return lambda payload, channel: sse.publish(payload, type="price", channel=channel)
    client = redis.Redis.from_url(redis_url)

    def publish(payload: str, channel: str) -> None:
        # What sse.publish does, minus building a new Redis client per call.
        client.publish(channel, flask_json.dumps(Message(payload, type="price").to_dict()))
    return publish


def run(upstream: str, channels: list[str], mode: str, max_seconds: float, counts: dict[str, int]) -> None:
    """Publish every trade of the channels' pairs until the deadline; `counts` counts as it goes."""
    redis_url = os.environ[REDIS_URL_VARIABLE]
    app = create_app(redis_url)
    channels_of: dict[str, list[str]] = defaultdict(list)
    for channel in channels:
        for pair in channel.split(","):
            channels_of[symbol_of(pair)].append(channel)
    pair_of = {symbol_of(pair): pair for channel in channels for pair in channel.split(",")}
    streams = "/".join(f"{symbol.lower()}@aggTrade" for symbol in sorted(channels_of))
    counts.update(trades=0, publishes=0)
    deadline = time.monotonic() + max_seconds
    ws = websocket.create_connection(f"{upstream}/stream?streams={streams}", timeout=10)
    print("bridging", flush=True)
    try:
        with app.app_context():
            publish = publisher(mode, redis_url)
            while time.monotonic() < deadline:
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                if not raw:
                    break
                data = json.loads(raw).get("data", {})
                if data.get("e") != "aggTrade" or data.get("s") not in pair_of:
                    continue
                counts["trades"] += 1
                symbol = data["s"]
                payload = json.dumps({"pair": pair_of[symbol], "symbol": symbol, "price": data["p"],
                                      "ts": data["E"]}, separators=(",", ":"))
                for channel in channels_of[symbol]:
                    publish(payload, channel)
                    counts["publishes"] += 1
    finally:
        ws.close()


class BridgeProcess:
    """The bridge as a subprocess; `stop()` (or leaving the `with`) ends it and keeps its counts."""

    def __init__(self, upstream: str, redis_url: str, channels: list[str], max_seconds: float,
                 mode: str = "pooled", startup_timeout: float = 15):
        self.counts: dict[str, int] = {}
        self._stdout = tempfile.NamedTemporaryFile(prefix="flask-sse-bridge-", suffix=".out", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.flask_sse_bridge", "--upstream", upstream,
             "--channels", ";".join(channels), "--publish", mode, "--max-seconds", str(max_seconds)],
            cwd=ROOT, env={**os.environ, REDIS_URL_VARIABLE: redis_url, "PYTHONUNBUFFERED": "1"},
            stdout=self._stdout, start_new_session=True)

        def bridging() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Flask-SSE bridge exited with {self.proc.returncode}")
            return "bridging" in Path(self._stdout.name).read_text()
        wait_until(bridging, startup_timeout, message="the Flask-SSE bridge to connect")

    def stop(self) -> dict[str, int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        lines = Path(self._stdout.name).read_text().splitlines()
        if lines and lines[-1].startswith("{"):
            self.counts = json.loads(lines[-1])
        self._stdout.close()
        Path(self._stdout.name).unlink(missing_ok=True)
        return self.counts

    def __enter__(self) -> BridgeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="the exchange's WebSocket base, ws://127.0.0.1:PORT")
    parser.add_argument("--channels", required=True,
                        help="';'-separated channels, each named by the ','-separated pairs it carries")
    parser.add_argument("--publish", choices=PUBLISH_MODES, default="pooled")
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    if not args.upstream.startswith("ws://127."):
        raise SystemExit(f"refusing {args.upstream}: the benchmark's exchange is the simulator on loopback")
    # SIGTERM ends the loop through SystemExit, so the counts below are still printed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    counts: dict[str, int] = {}
    try:
        run(args.upstream, args.channels.split(";"), args.publish, args.max_seconds, counts)
    finally:
        print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
