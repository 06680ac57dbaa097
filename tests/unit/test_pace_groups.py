"""Pace groups in the hub: clients of different intervals on one hub, one timer, shared chunks,
and WebSocket clients beside SSE clients. Real socket pairs; the test reads the browser's end."""
from __future__ import annotations

import socket

from pricefeed.delivery import ws_frames
from pricefeed.delivery.flusher import Flusher, chunk_for
from pricefeed.delivery.hub import Hub
from pricefeed.delivery.pace import GRID_MS, MAX_INTERVAL_MS, on_grid, pace_in_force
from pricefeed.delivery.stream_client import WEBSOCKET
from tests.unit.test_hub import Wire, prices, tick


def flush(hub: Hub, slot: int | None = None) -> int:
    return Flusher(hub).flush(hub.take_batch(slot))


class WSWire:
    """A WebSocket client of the hub: the browser's end reads server frames."""

    def __init__(self, hub: Hub, pairs: tuple[str, ...], pace_ms: int | None = None):
        self.server_end, self.browser_end = socket.socketpair()
        self.server_end.setblocking(False)
        self.client = hub.connect(pairs, self.server_end, pace_ms, WEBSOCKET)
        hub.ready(self.client)
        self._raw = b""

    def messages(self) -> list[bytes]:
        self.browser_end.setblocking(False)
        try:
            while True:
                data = self.browser_end.recv(1 << 20)
                if not data:
                    break
                self._raw += data
        except BlockingIOError:
            pass
        out = []
        while len(self._raw) >= 2:
            length = self._raw[1] & 0x7F
            at = 2
            if length == 126:
                length, at = int.from_bytes(self._raw[2:4], "big"), 4
            if len(self._raw) < at + length:
                break
            out.append(self._raw[at:at + length])
            self._raw = self._raw[at + length:]
        return out


def paced_wire(hub: Hub, pairs: tuple[str, ...], pace_ms: int) -> Wire:
    """An SSE client of the hub at its own pace."""
    wire = Wire.__new__(Wire)
    wire.server_end, wire.browser_end = socket.socketpair()
    wire.server_end.setblocking(False)
    wire.client = hub.connect(pairs, wire.server_end, pace_ms)
    hub.ready(wire.client)
    wire._raw = b""
    return wire


def test_paces_are_rounded_up_to_the_grid_and_never_below_the_floor():
    assert on_grid(0) == 0 and on_grid(100) == 100 and on_grid(101) == 150 and on_grid(1000) == 1000
    assert pace_in_force(None, 0.0) == 0 and pace_in_force(None, 1.0) == 1000
    assert pace_in_force(0, 0.25) == 250 and pace_in_force(100, 0.25) == 250 and pace_in_force(2000, 0.25) == 2000
    assert len({on_grid(ms) for ms in range(100, MAX_INTERVAL_MS + 1)}) <= MAX_INTERVAL_MS // GRID_MS


def test_clients_of_different_paces_on_one_hub_each_get_their_own_pace():
    hub = Hub(["BTC/USD"], max_clients=100, stale_after=10)
    every_tick = Wire(hub, ("BTC/USD",))
    second_wire = paced_wire(hub, ("BTC/USD",), 200)     # 4 slots of 50 ms
    flush(hub)
    assert hub.pace_groups() == {0: 1, 200: 1}
    for seq in range(1, 6):
        hub.publish(tick(price=f"{seq}.00", seq=seq))
    flush(hub)                                     # the every-tick flush: not the conflated client
    assert prices(every_tick.body()) == ["1.00", "2.00", "3.00", "4.00", "5.00"]
    assert second_wire.body() == b""
    slot = second_wire.client.slot
    flush(hub, slot + 1)                           # another slot's timer tick: still nothing
    assert second_wire.body() == b""
    flush(hub, slot + 4)                           # its own slot (tick ≡ slot mod 4): the latest only
    assert prices(second_wire.body()) == ["5.00"]
    assert every_tick.body() == b""


def test_a_pace_group_is_dropped_when_its_last_client_leaves():
    hub = Hub(["BTC/USD"], max_clients=100, stale_after=10)
    wire = Wire(hub, ("BTC/USD",))
    other = socket.socketpair()
    client = hub.connect(("BTC/USD",), other[0], 1000)
    assert hub.has_conflated and hub.pace_groups() == {0: 1, 1000: 1}
    hub.disconnect(client)
    assert not hub.has_conflated and hub.pace_groups() == {0: 1}
    assert wire.client.pace_ms == 0


def test_websocket_and_sse_clients_on_the_same_pairs_get_the_same_events_in_their_own_framing():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    sse_a, sse_b = Wire(hub, ("BTC/USD",)), Wire(hub, ("BTC/USD",))
    ws_a, ws_b = WSWire(hub, ("BTC/USD",)), WSWire(hub, ("BTC/USD",))
    flush(hub)
    hub.publish(tick(price="7.00", seq=1))
    hub.publish(tick(price="8.00", seq=2))
    batch = hub.take_batch()
    assert chunk_for(sse_a.client, batch) is chunk_for(sse_b.client, batch)       # shared within a transport
    assert chunk_for(ws_a.client, batch) is chunk_for(ws_b.client, batch)
    assert chunk_for(ws_a.client, batch) is not chunk_for(sse_a.client, batch)    # keyed on transport too
    Flusher(hub).flush(batch)
    sse_events = sse_a.body()
    ws_messages = ws_a.messages()
    assert len(ws_messages) == 2                     # one WebSocket message per event, one write
    assert prices(sse_events) == prices(b"".join(ws_messages)) == ["7.00", "8.00"]
    assert ws_messages[0].startswith(b'{"event":"price","id":"1-1","data":{"pair":"BTC/USD"')


def test_resubscribing_a_websocket_client_changes_what_it_is_sent():
    hub = Hub(["BTC/USD", "ETH/USD"], max_clients=10, stale_after=10)
    ws = WSWire(hub, ("BTC/USD",))
    flush(hub)
    hub.resubscribe(ws.client, ("ETH/USD",))
    hub.publish(tick("BTC/USD", "1.00", seq=1))
    hub.publish(tick("ETH/USD", "2.00", seq=2))
    flush(hub)
    assert prices(b"".join(ws.messages())) == ["2.00"]
    assert hub.latest_frames(("BTC/USD", "ETH/USD"), WEBSOCKET).count(b'"event":"price"') == 2


def test_a_reply_written_while_a_backlog_is_pending_waits_behind_it_whole():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    ws = WSWire(hub, ("BTC/USD",))
    ws.server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    flush(hub)
    seq = 0
    while ws.client.backlog is None:
        seq += 1
        hub.publish(tick(price=f"{seq}.00", seq=seq))
        flush(hub)
    reply = ws_frames.event_json("pong", None, None)
    assert ws.client.send_now(reply)
    assert ws.client.outbox == reply and ws.client.busy          # queued, not interleaved
    hub.publish(tick(price="999.00", seq=seq + 1))
    flush(hub)
    assert hub.counters.skipped_busy >= 1                                 # the flusher leaves a busy socket alone


def test_a_websocket_client_is_pinged_every_round_even_while_prices_flow():
    hub = Hub(["BTC/USD"], max_clients=10, stale_after=10)
    ws, sse_wire = WSWire(hub, ("BTC/USD",)), Wire(hub, ("BTC/USD",))
    flush(hub)
    ws.messages()
    sse_wire.body()
    hub.ping_all()
    hub.publish(tick(price="1.00", seq=1))
    flush(hub)
    assert ws._raw == b"" and ws.messages()[-1] == b""          # the last frame: an empty ping
    assert b": ping" not in sse_wire.body()                      # SSE: prices are keep-alive enough
