"""Delivery: how prices reach browsers — pace, resume and history, the flusher, admission,
shedding, and how many streams one worker holds."""
from __future__ import annotations

from dataclasses import dataclass

from pricefeed.settings import parsers
from pricefeed.settings.declaration import OPERATOR, ConfigError, SettingsGroup, setting


@dataclass(frozen=True)
class DeliverySettings(SettingsGroup):
    TITLE = "Delivery: pace, admission, shedding and capacity"
    SUMMARY = ("How prices reach browsers (delivery/): staleness and pace, resume and history, the stream "
               "writes, the admission gate, load shedding, and a worker's capacity (capacity.py).")
    ATTRIBUTE = "delivery"

    stale_after: float = setting(
        float, 10.0, "Seconds after which a price is flagged stale.", minimum=0.5, maximum=3600)
    heartbeat_interval: float = setting(
        float, 15.0, "Seconds between `: ping` comments on streams.", minimum=0.1, maximum=15)
    min_update_interval: float = setting(
        float, 0.0,
        "Per client and pair, at most one price update per this many seconds (0: every tick): the pace of a "
        "stream that gives no `interval`, and the floor of one that does.", kind=OPERATOR, minimum=0, maximum=60)
    retry_ms: int = setting(int, 2000, "Base of the SSE `retry:` hint, ms.", minimum=100, maximum=600000)
    retry_jitter_ms: int = setting(
        int, 3000, "Random extra added per connection to `retry:`, ms.", minimum=0, maximum=600000)
    resume_window: int = setting(
        int, 4096, "Recent ticks remembered to tell a resuming client whether it has a gap.",
        minimum=0, maximum=1_000_000)
    history_window: float = setting(
        float, 900.0, "Seconds of one-point-per-second price history kept per pair for {prefix}/history.",
        minimum=1, maximum=86400)
    write_timeout: float = setting(
        float, 30.0,
        "Seconds a stream may stay behind (its writes waiting on a client that does not read as fast as "
        "they come) before the client is dropped.", minimum=1, maximum=3600)
    stream_send_buffer: int = setting(
        int, 32768,
        "Bytes of the kernel's send buffer per stream socket (SO_SNDBUF; Linux doubles it). Bounds the "
        "kernel memory a client that stops reading holds, and how long it takes to notice it (a full "
        "buffer, then PRICEFEED_WRITE_TIMEOUT). 0: the kernel's autotuning (up to tcp_wmem's maximum).",
        minimum=0, maximum=16 * 1024 * 1024)
    min_write_spacing: float = setting(
        float, 0.02,
        "Seconds every-tick flushes start apart at the least (0: each as soon as its tick arrives). Ticks "
        "further apart go out at once; faster ticks share one write per client, each delayed by at most this "
        "much (a screen shows one frame per 16.7 ms anyway), every tick still sent, in order. At 100 ticks/s the "
        "default halves the writes and saves a fifth of the server's CPU (bench/fanout.py --scenario "
        "fast-trader). At most 0.04: under the conflated slots' 50 ms, and at most half the lag bound.",
        minimum=0, maximum=0.04)
    stream_nodelay: bool = setting(
        parsers.boolean, True,
        "TCP_NODELAY on stream sockets (gunicorn sets it on every connection). false: the kernel also folds "
        "writes together while earlier ones are unacknowledged (Nagle) — far fewer packets on a fast market, "
        "at the cost of up to a client's delayed ACK (40 ms on Linux, up to 200 ms on Windows) on a tick.")
    direct_writes: bool = setting(
        parsers.boolean, True,
        "Write stream chunks straight to the socket from the flush loop (plain HTTP/1.1 under gunicorn's "
        "gevent worker only; elsewhere chunks go through WSGI, which costs more CPU per write).")
    new_streams_per_second: float = setting(
        float, 2000.0,
        "Per worker, new streams admitted per second after a burst (a reconnect storm waits its turn). At the "
        "default the gate is not what bounds a restart of 20,000 streams on two workers: the CPU is "
        "(bench/restart.py: all back in 9-13 s on two cores shared with the load generator).",
        minimum=1, maximum=100_000)
    new_streams_burst: int = setting(
        int, 500, "Per worker, new streams admitted at once before pacing starts.", minimum=1, maximum=100_000)
    new_stream_max_wait: float = setting(
        float, 10.0, "Longest a new stream waits for admission before it gets 503 with Retry-After.",
        minimum=0, maximum=120)
    accept_batch: int = setting(
        int, 32,
        "Per worker, connections accepted per turn of the event loop (gunicorn's gevent worker "
        "takes one when there are several workers: a busy worker's listen queue fills, and its 503s wait in it).",
        minimum=1, maximum=1000)
    lag_bound: float = setting(
        float, 0.0,
        "Seconds the flusher may run late (a tick's arrival at the hub, or a conflated slot falling due, to the "
        "end of the flush that wrote it) before new streams get 503 at_capacity. 0: from the pace (0.25 s every "
        "tick; conflated: half MIN_UPDATE_INTERVAL, at least 0.25 s), which keeps every-tick clients well under a "
        "second. To hold their p99 near its unloaded figure past capacity, set it to that target (e.g. 0.075 with "
        "SHED_AFTER_SECONDS=0.5; bench/overload.py).",
        minimum=0, maximum=60)
    shed_after_flushes: int = setting(
        int, 3, "Consecutive flushes over the lag bound before shedding starts (it stops below half the bound).",
        minimum=1, maximum=1000)
    shed_after_seconds: float = setting(
        float, 1.0,
        "...and those late flushes must span at least this long (a burst of connects is the admission "
        "gate's to pace, not an overload).", minimum=0, maximum=60)
    shed_retry_after: int = setting(
        int, 2, "Retry-After of a stream refused for lag, seconds (plus the jitter).", minimum=1, maximum=3600)
    shed_retry_jitter: int = setting(
        int, 3, "Random extra seconds added per refusal to SHED_RETRY_AFTER.", minimum=0, maximum=3600)
    worker_connections: int | None = setting(
        int, None,
        "gunicorn worker_connections (read by pricefeed's worker at start). Unset: derived from the "
        "open-files limit, which the worker raises to the hard limit at start (capacity.py: open files − 128).",
        kind=OPERATOR, minimum=1, maximum=1_000_000)
    max_clients: int | None = setting(
        int, None,
        "Streaming clients per worker before answering 503. Unset: worker_connections minus "
        "PRICEFEED_CONNECTION_RESERVE (capacity.py); under pricefeed's worker a larger value is lowered to that.",
        kind=OPERATOR, minimum=1, maximum=1_000_000)
    connection_reserve: int = setting(
        int, 100,
        "Connections per worker kept free of streams so /health and /prices always answer: streams are "
        "capped at worker_connections minus this (at most half of worker_connections is reserved).",
        minimum=0, maximum=1_000_000)

    def __post_init__(self) -> None:
        if self.min_update_interval >= self.heartbeat_interval:
            raise ConfigError("PRICEFEED_MIN_UPDATE_INTERVAL must be below PRICEFEED_HEARTBEAT_INTERVAL "
                              "(a stream waiting that long would miss its keep-alive)")
        if self.lag_bound and self.min_write_spacing * 2 > self.lag_bound:
            raise ConfigError("PRICEFEED_MIN_WRITE_SPACING must be at most half of PRICEFEED_LAG_BOUND "
                              "(a tick held for the spacing counts as lag: the shedder would refuse streams "
                              "whenever the market is fast)")
