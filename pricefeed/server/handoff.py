"""The worker's side of the stream hand-off: a just-accepted connection whose request head is
a clean stream GET goes straight to the app's stream session, without gunicorn's parser,
Request object and keep-alive loop (a third of a stream's open, profiled).

What the app offers (`PriceFeed.stream_hand_off`, pricefeed/web/streams/handoff.py):
`environ_for(head, sock, client_address) -> dict | None` and `serve(environ)`. The worker
offers it only where gunicorn would do nothing per request that a stream needs
(`offers_hand_off`): no access log, no pre/post_request hook of the host's, no
max_requests, no PROXY protocol, plain HTTP (not TLS, not uwsgi), no SCRIPT_NAME, an
IP listener. Everything the app does not recognise is left unread for gunicorn.

The head is peeked as the door peeks it (accept.py): complete within HEAD_WAIT_S and
nothing after it, or gunicorn's normal path. The connection's greenlet is the pool's as
before, so the worker's ordered stop closes a handed-off stream like any other (the
feed's spread close) and waits for it.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, Protocol


class HandOff(Protocol):
    """What the app offers the worker (pricefeed/web/streams/handoff.py StreamHandOff)."""

    def environ_for(self, head: bytes, sock: Any, client_address: tuple) -> dict | None:
        """The WSGI environ if this complete head is a stream request the app takes; else None."""

    def serve(self, environ: dict) -> None:
        """Serve the stream (or its refusal) on the connection; the worker closes it after."""


def offers_hand_off(cfg: Any, listener: Any) -> bool:
    """True where gunicorn would do nothing per stream request that the hand-off skips."""
    settings = cfg.settings
    hooks_are_gunicorns = all(settings[name].value is settings[name].default
                              for name in ("pre_request", "post_request"))
    return (hooks_are_gunicorns and not cfg.accesslog and not cfg.max_requests
            and cfg.proxy_protocol in ("off", False, None) and not cfg.is_ssl and cfg.protocol != "uwsgi"
            and not os.environ.get("SCRIPT_NAME")
            and getattr(listener, "family", None) in (socket.AF_INET, socket.AF_INET6))


def served_by_hand_off(hand_off: HandOff, client: Any, address: Any,
                       peek_head: Callable[[Any], bytes | None]) -> bool:
    """Serve this connection through the app's hand-off if its request head (`peek_head`, the
    door's: accept.py) is one it takes; else False, with nothing read (gunicorn's normal path)."""
    head = peek_head(client)
    if head is None:
        return False
    environ = hand_off.environ_for(head, client, address)
    if environ is None:
        return False
    try:
        client.recv(len(head))          # consume what was peeked
    except OSError:
        return True                     # gone already
    hand_off.serve(environ)
    return True

