"""Counters tests read through `GET /_sim/stats`.

All updates happen on the one gevent hub thread, so plain integers suffice.
A reset starts a new measurement: a pong that answers a ping sent before the
reset is not counted, so `pongs_received <= pings_sent` holds after a reset
even when one ping was in flight across it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields


@dataclass
class Stats:
    connections_open: int = 0
    connections_total: int = 0
    max_concurrent: int = 0
    handshakes_refused: int = 0
    targets_too_long: int = 0        # handshakes refused 414: request target past the length cap
    streams_refused: int = 0         # handshakes (400) or SUBSCRIBEs (error) past the stream cap
    messages_sent: int = 0           # market data frames written (not pings, replies or faults)
    messages_received: int = 0       # every incoming text, binary, ping and pong frame
    responses_sent: int = 0          # replies to SUBSCRIBE & co, including errors
    outbox_dropped: int = 0          # data frames dropped because a client read too slowly
    pings_sent: int = 0
    pongs_received: int = 0
    pongs_matched: int = 0           # pongs that echoed an outstanding ping
    pongs_ignored: int = 0           # pongs disregarded under the ignore_pongs fault
    pong_timeouts: int = 0           # connections dropped for want of a pong
    lifetime_closes: int = 0
    rate_limit_closes: int = 0
    closes_1008: int = 0
    drops: int = 0                   # connections dropped by the drop fault
    malformed_sent: int = 0
    shutdown_notices_sent: int = 0
    hostile_sent: int = 0            # frames of the hostile fault
    replies_withheld: int = 0        # control requests left unanswered (silence, stall)
    rest_requests: int = 0
    rest_rejected: int = 0           # REST answered 429 for exceeding the weight limit
    rest_failed: int = 0             # REST failed on purpose by the rest fault

    def __post_init__(self) -> None:
        self.since = time.monotonic()   # when counting (re)started; not a counter

    def connection_opened(self) -> None:
        self.connections_open += 1
        self.connections_total += 1
        self.max_concurrent = max(self.max_concurrent, self.connections_open)

    def connection_closed(self) -> None:
        self.connections_open -= 1

    def reset(self) -> None:
        """Zero the totals; the open count stays true and becomes the new peak."""
        for item in fields(self):
            if item.name != "connections_open":
                setattr(self, item.name, 0)
        self.max_concurrent = self.connections_open
        self.since = time.monotonic()

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
