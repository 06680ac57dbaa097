"""The app's side of the worker's door: which request heads are new streams, and the
answer a shedding worker gives them before gunicorn's parser and Flask.

The worker (pricefeed/server/accept.py) asks `closed()` for each connection it accepts;
while it is closed, it peeks the connection's complete request head and asks `answer()`.
Only a plain same-origin `GET` of a stream route is answered (no Origin header, whose
answer would need CORS headers — policy/origins.py; no body, which would be left unread): its
query checked first, as the view checks it (a malformed one is the view's JSON 400 whatever
the load: retrying it later would not help), then the `503 at_capacity` JSON the view would
send, with the shedder's jittered Retry-After.

The worker sees a connection's first request only; the requests that follow on a kept-alive
connection reach the app, where StreamRoutes asks `refusal(environ)` — the same checks on
the WSGI environ, before the view takes an address slot or a turn at the admission gate.
Everything else, and every request while the worker is stopping (its answer is the view's
"shutting_down, reconnect now"), takes gunicorn's normal path.

`stream_paths` are the request paths as a browser sends them (a prefix with other than
ASCII arrives percent-encoded). A new stream route registers its path here.
"""
from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from pricefeed.node import Node
from pricefeed.web.errors import ApiError, at_capacity
from pricefeed.web.streams.raw_response import DoorRefusal, raw_json_response
from pricefeed.web.streams.request import parse_interval, parse_last_event_id, parse_pairs, query_arguments

# The environ key naming a door refusal's reason, for an access_log_format's `%({pricefeed.refused}e)s`.
REFUSED_KEY = "pricefeed.refused"


def encoded_path(path: str) -> bytes:
    """`path` as a browser sends it on the request line."""
    return quote(path, safe="/-._~!$&'()*+,;=:@").encode("ascii")


class StreamDoor:
    def __init__(self, node: Node, stream_paths: Iterable[str]):
        self.node = node
        self.stream_paths = frozenset(encoded_path(path) for path in stream_paths)
        # The view's other headers (security_headers.add_common_headers, the CORS Vary).
        self._common_headers = f"Vary: Origin\r\nReferrer-Policy: {node.config.endpoint.referrer_policy}\r\n"

    def closed(self) -> bool:
        return self.node.shedder.shedding and not self.node.hub.stopping

    def answer(self, head: bytes) -> DoorRefusal | None:
        if not is_plain_request_for(head, self.stream_paths):
            return None
        malformed = self._malformed(head_environ(head))
        if malformed is not None:
            return DoorRefusal(raw_json_response(400, "BAD REQUEST", malformed.error, malformed.detail,
                                                 self._common_headers), 400, malformed.error)
        shedder = self.node.shedder
        retry_after = shedder.refuse()
        if retry_after is None:
            return None          # it stopped shedding just now: the view decides
        shedder.shed_at_door += 1
        return DoorRefusal(raw_json_response(503, "SERVICE UNAVAILABLE", "at_capacity", shedder.detail(),
                                             self._common_headers + f"Retry-After: {retry_after}\r\n"),
                           503, "at_capacity")

    def refusal(self, environ: dict) -> ApiError | None:
        """For a stream request that reached the app (a kept-alive connection's next request)
        while the door is closed: its 400 if malformed, else the shedder's 503; None to let the
        view decide (not shedding, or a cross-origin request: the view adds its CORS headers)."""
        if not self.closed() or environ.get("HTTP_ORIGIN") is not None:
            return None
        refusal = self._malformed(environ)
        if refusal is None:
            shedder = self.node.shedder
            retry_after = shedder.refuse()
            if retry_after is None:
                return None
            shedder.shed_at_door += 1
            refusal = at_capacity(shedder.detail(), retry_after, jitter=0)
        environ[REFUSED_KEY] = refusal.error
        return refusal

    def _malformed(self, environ: dict) -> ApiError | None:
        """The view's 400 for this stream request's query or Last-Event-ID, or None."""
        try:
            arguments = query_arguments(environ)
            parse_pairs(arguments.get("pairs"), self.node)
            parse_interval(arguments.get("interval"), self.node)
            raw_id = environ.get("HTTP_LAST_EVENT_ID")
            parse_last_event_id(arguments.get("lastEventId") if raw_id is None else raw_id)
        except ApiError as exc:
            return exc
        return None


def head_environ(head: bytes) -> dict:
    """The part of a WSGI environ the query checks read, from a complete request head."""
    request_line, _, headers = head.partition(b"\r\n")
    target = request_line.split(b" ")[1]
    environ = {"QUERY_STRING": target.partition(b"?")[2].decode("latin-1")}
    for line in headers.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"last-event-id":
            environ["HTTP_LAST_EVENT_ID"] = value.strip().decode("latin-1")
    return environ


def is_plain_request_for(head: bytes, paths: frozenset[bytes]) -> bool:
    """A complete head of `GET <one of paths>[?query] HTTP/1.x` with no Origin and no body."""
    request_line, _, headers = head.partition(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return False
    if parts[1].split(b"?", 1)[0] not in paths:
        return False
    lowered = b"\r\n" + headers.lower()
    return not any(b"\r\n" + name in lowered for name in (b"origin:", b"content-length:", b"transfer-encoding:"))
