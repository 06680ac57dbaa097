"""Parts of pricefeed's gunicorn worker (pricefeed/server/) that can be shown without gunicorn:
the keep-alive waits it knows of, the stop's timing, the version range, the JSON limit answers.
Each behaviour under a real gunicorn is in tests/integration/test_worker.py and
test_overload_and_restart.py."""
from __future__ import annotations

import json
import socket
import time
from types import SimpleNamespace

import gevent
import pytest
from gunicorn.http.errors import InvalidRequestLine, LimitRequestHeaders, LimitRequestLine

from pricefeed.server.keepalive import KeepAliveWaits
from pricefeed.server.limits import json_refusal
from pricefeed.server.worker import restart_timing, supported


def connection(waits: KeepAliveWaits, requests: int, log: list) -> None:
    """gunicorn's keep-alive loop, with a request head that never comes after `requests` of them."""
    served = 0
    while True:
        request = None
        with waits.wait(5):
            if served < requests:
                gevent.sleep(0.01)
                request = "GET"
            else:
                gevent.sleep(10)        # waiting for the next request head
                request = "GET"
        if not request:
            log.append(("closed", served))
            return
        served += 1


def test_only_a_connection_waiting_after_a_first_request_is_idle_and_closing_it_ends_its_loop_quietly():
    waits = KeepAliveWaits()
    log: list = []
    fresh = gevent.spawn(connection, waits, 0, log)        # no request yet: its head may be on its way
    kept = [gevent.spawn(connection, waits, 1, log) for _ in range(3)]
    gevent.sleep(0.1)
    assert waits.idle == 3
    started = time.monotonic()
    assert waits.close_idle() == 3
    gevent.joinall(kept, timeout=2)
    assert time.monotonic() - started < 1
    assert sorted(log) == [("closed", 1)] * 3 and all(g.successful() for g in kept)
    assert not fresh.dead and waits.idle == 0
    fresh.kill()


def test_a_wait_that_begins_after_the_sweep_is_ended_too():
    waits = KeepAliveWaits()
    log: list = []
    waits.close_idle()
    late = gevent.spawn(connection, waits, 5, log)        # its first request in flight at the sweep ...
    late.join(timeout=2)
    assert log == [("closed", 1)]                         # ... answered, then no wait for another


def test_a_connection_whose_next_request_has_arrived_unread_is_left_to_answer_it():
    waits = KeepAliveWaits()
    log: list = []
    ours, peer = socket.socketpair()
    try:
        waiting = gevent.spawn(connection, waits, 1, log)
        waits.serving(waiting, ours)
        gevent.sleep(0.1)
        peer.sendall(b"GET /prices HTTP/1.1\r\nHost: x\r\n\r\n")    # sent just as the worker stops
        assert waits.close_idle() == 1
        gevent.sleep(0.1)
        assert log == [] and not waiting.dead       # not reset under its request
        waiting.kill()
    finally:
        ours.close()
        peer.close()


def test_the_restart_delay_and_spread_fit_in_the_budget_left_before_the_deadline():
    assert restart_timing(2.0, 4.0, budget_s=7) == (2.0, 4.0)
    assert restart_timing(2.0, 9.0, budget_s=7) == (2.0, 5.0)
    assert restart_timing(5.0, 4.0, budget_s=7) == (7 / 3, 4.0)
    assert restart_timing(2.0, 4.0, budget_s=-1) == (0.0, 0.0)


def test_the_supported_gunicorn_range():
    assert supported((27, 0, 1)) and supported((27, 9, 0))
    assert not supported((26, 1, 0)) and not supported((28, 0, 0))


def test_gunicorns_limit_errors_are_answered_in_json_and_others_left_to_gunicorn():
    cfg = SimpleNamespace(limit_request_line=8190, limit_request_field_size=8190)
    for exc, status, error in ((LimitRequestLine(9000, 8190), b"414", "query_too_long"),
                               (LimitRequestHeaders("too many"), b"431", "headers_too_large")):
        response = json_refusal(exc, cfg)
        assert response is not None
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + status) and b"Content-Type: application/json" in head
        assert json.loads(body)["error"] == error and "8190" in json.loads(body)["detail"]
    assert json_refusal(InvalidRequestLine("x"), cfg) is None


@pytest.mark.parametrize("name", ["timeout_ctx", "handle_error", "handle_exit", "handle_quit", "run", "load_wsgi",
                                  "init_process"])
def test_the_worker_overrides_gunicorns_methods_rather_than_replacing_them(name):
    from gunicorn.workers.ggevent import GeventWorker

    from pricefeed.server.worker import Worker
    assert issubclass(Worker, GeventWorker) and name in vars(Worker)
