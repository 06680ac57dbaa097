"""WebSocket framing and operations: what the reader accepts and refuses, over a real socket pair."""
from __future__ import annotations

import os
import socket

import pytest

from pricefeed.delivery import ws_frames
from pricefeed.delivery.history import PriceHistory
from pricefeed.pairs import PairCatalog
from pricefeed.web.streams.ws_operations import OperationError, parse_operation
from tests.unit.test_hub import tick


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    header = bytes([(0x80 if fin else 0) | rsv | opcode])
    flag = 0x80 if mask else 0
    if len(payload) < 126:
        header += bytes([flag | len(payload)])
    else:
        header += bytes([flag | 126]) + len(payload).to_bytes(2, "big")
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read(data: bytes, max_size: int = 1024) -> ws_frames.Message:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        return ws_frames.read_message(ws_frames.SocketReader(ours), max_size)


def test_the_accept_key_is_rfc_6455s_example():
    assert ws_frames.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert ws_frames.valid_client_key("dGhlIHNhbXBsZSBub25jZQ==")
    assert not ws_frames.valid_client_key("short") and not ws_frames.valid_client_key(None)


def test_a_masked_text_frame_and_a_fragmented_message_are_read_whole():
    assert read(client_frame(1, b'{"op":"ping"}')) == ws_frames.Message(1, b'{"op":"ping"}')
    fragmented = client_frame(1, b'{"op":', fin=False) + client_frame(9, b"hi") + client_frame(0, b'"ping"}')
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(fragmented)
        reader = ws_frames.SocketReader(ours)
        assert ws_frames.read_message(reader, 1024) == ws_frames.Message(9, b"hi")   # a control frame in between
        assert ws_frames.read_message(reader, 1024) == ws_frames.Message(1, b'{"op":"ping"}')


def test_a_long_frame_is_unmasked_exactly():
    payload = bytes(range(256)) * 4
    assert read(client_frame(2, payload), 4096).payload == payload


@pytest.mark.parametrize("data, code", [
    (client_frame(1, b"x" * 2000), ws_frames.CLOSE_TOO_BIG),                      # over the limit: by the header
    (client_frame(1, b"x" * 600, fin=False) + client_frame(0, b"x" * 600), ws_frames.CLOSE_TOO_BIG),
    (client_frame(1, b"{}", mask=False), ws_frames.CLOSE_PROTOCOL_ERROR),
    (client_frame(1, b"{}", rsv=0x40), ws_frames.CLOSE_PROTOCOL_ERROR),
    (client_frame(0, b"{}"), ws_frames.CLOSE_PROTOCOL_ERROR),
    (client_frame(3, b"{}"), ws_frames.CLOSE_PROTOCOL_ERROR),
    (client_frame(9, b"x", fin=False), ws_frames.CLOSE_PROTOCOL_ERROR),
])
def test_protocol_violations_and_oversized_messages_are_refused_with_their_close_code(data, code):
    with pytest.raises(ws_frames.FrameError) as refused:
        read(data)
    assert refused.value.code == code


def test_a_connection_ending_inside_a_frame_is_a_connection_error():
    with pytest.raises(ConnectionError):
        read(client_frame(1, b'{"op":"ping"}')[:5])


def test_server_frames_are_unmasked_and_hold_event_id_and_data():
    frame = ws_frames.event_json("price", '{"pair":"BTC/USD"}', "1-2")
    assert frame[0] == 0x81 and frame[1] == len(frame) - 2
    assert frame[2:] == b'{"event":"price","id":"1-2","data":{"pair":"BTC/USD"}}'
    assert ws_frames.event_json("pong", None, None)[2:] == b'{"event":"pong","id":null}'
    assert ws_frames.close(1008, "too many")[:4] == b"\x88\x0a\x03\xf0"


CATALOG = PairCatalog(["BTC/USD", "ETH/USD"])


def test_operations_parse_into_served_pair_names():
    assert parse_operation('{"op":"subscribe","pairs":["eth/usd","ETH/USDT","BTC/USD"]}', CATALOG) == \
        ("subscribe", ("ETH/USD", "BTC/USD"))
    assert parse_operation('{"op":"ping"}', CATALOG) == ("ping", ())


@pytest.mark.parametrize("text, error", [
    ("nope", "malformed_operation"), ('"ping"', "malformed_operation"), ('{"op":1}', "malformed_operation"),
    ('{"op":"list"}', "unknown_operation"), ('{"op":"unsubscribe","pairs":"BTC/USD"}', "malformed_pairs"),
    ('{"op":"subscribe","pairs":["' + "A" * 41 + '"]}', "malformed_pairs"),
    ('{"op":"subscribe","pairs":["XRP/USD"]}', "unknown_pair"),
])
def test_bad_operations_are_errors_to_answer(text, error):
    with pytest.raises(OperationError) as refused:
        parse_operation(text, CATALOG)
    assert refused.value.error == error


def test_history_keeps_the_last_price_of_each_second_within_the_window():
    history = PriceHistory(["BTC/USD"], interval_ms=1000, window_ms=3000)
    for ts, price in [(10_100, "1"), (10_900, "2"), (11_000, "3"), (13_500, "4"), (12_000, "old"), (14_000, "5")]:
        history.record(tick(price=price, ts=ts))
    assert history.window(["BTC/USD"], 14_500) == {"BTC/USD": [[13_000, "4"], [14_000, "5"]]}
    assert history.window(["BTC/USD"], 16_500) == {"BTC/USD": [[14_000, "5"]]}
