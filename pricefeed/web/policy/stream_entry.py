"""Letting a new stream in — the same rules for both transports (/stream and /ws).

In order, each a fast refusal the browser retries after `Retry-After`:
1. the worker is shutting down (503 shutting_down) or holds its maximum (503 at_capacity);
2. the client's address already holds its share of streams (429 too_many_streams);
3. the flusher runs late (503 at_capacity: joining would make every client later still);
4. the admission gate: this address's share of the new-stream rate (429 too_many_new_streams),
   then the worker's (503 at_capacity), or a bounded wait for a turn — which shutdown ends and
   a client that leaves gives back.
"""
from __future__ import annotations

import socket
from collections.abc import Callable

from pricefeed.node import Node
from pricefeed.web.errors import ApiError, at_capacity, shutting_down, too_many_streams
from pricefeed.web.policy.client_presence import CLOSED, GONE, TURN, wait_for_turn


def hold_stream_slot(node: Node, address: str) -> Callable[[], None]:
    """Steps 1-2: take one of `address`'s stream slots (client_address.client_key); returns the
    (idempotent) release."""
    if node.hub.closed:
        raise shutting_down()
    if node.hub.full:
        node.hub.counters.clients_refused += 1
        raise at_capacity()
    streams = node.admission.streams
    if not streams.acquire(address):
        raise too_many_streams(streams.limit)
    released: list[bool] = []

    def release() -> None:
        if not released:
            released.append(True)
            streams.release(address)
    return release


def pass_the_gate(node: Node, address: str, sock: socket.socket | None) -> None:
    """Steps 3-4, for an address already holding a slot: the shedder, then the admission gate.
    Returns when the stream may connect."""
    if node.hub.stopping:
        raise shutting_down()       # stopping: "reconnect now, elsewhere", not "come back later"
    shed_retry_after = node.shedder.refuse()
    if shed_retry_after is not None:
        raise at_capacity(node.shedder.detail(), shed_retry_after, jitter=0)
    admission = node.admission.admit(address)
    if admission.refused == "address":
        raise ApiError(429, "too_many_new_streams", "too many new streams from your address at once; retry",
                       {"Retry-After": str(admission.retry_after or node.admission.retry_after(address))})
    if admission.refused:
        raise at_capacity("too many new streams on this worker at once; retry",
                          node.admission.retry_after(), jitter=5)
    if admission.wait:
        # A reconnect storm is admitted at a bounded rate (admission.py); shutdown ends the
        # wait, and a client that leaves gives its slot back.
        outcome = wait_for_turn(node.hub, admission.wait, sock)
        if outcome != TURN:
            node.admission.cancel(address)
            if outcome == CLOSED:
                raise shutting_down()
            assert outcome == GONE
            raise ApiError(400, "client_gone", "the client left while waiting for admission")
