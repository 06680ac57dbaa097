"""The socket options a stream gets once it is admitted (streams/server.py bound_writes), on a real
loopback TCP connection accepted from a listener set up as gunicorn sets its own (TCP_NODELAY)."""
from __future__ import annotations

import socket

import pytest

from pricefeed.web.streams.server import bound_writes


@pytest.fixture
def accepted():
    listener = socket.socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)     # gunicorn's sock.py does this
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    browser = socket.create_connection(listener.getsockname())
    server_end, _ = listener.accept()
    yield server_end
    for sock in (server_end, browser, listener):
        sock.close()


def nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def test_a_stream_keeps_the_nodelay_it_inherits_from_gunicorns_listener_by_default(accepted):
    assert nodelay(accepted)
    bound_writes(accepted, 5.0, 32768)
    assert nodelay(accepted)
    assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 32768    # Linux doubles it
    assert accepted.gettimeout() == 5.0


def test_stream_nodelay_false_turns_nagle_back_on_for_the_stream(accepted):
    bound_writes(accepted, 5.0, 32768, nodelay=False)
    assert not nodelay(accepted)


def test_a_socket_that_is_not_tcp_is_left_as_it_is():
    one, other = socket.socketpair()
    try:
        bound_writes(one, 5.0, 32768, nodelay=False)      # no TCP options on a unix socket: no error
        assert one.gettimeout() == 5.0
    finally:
        one.close()
        other.close()
