"""The app's side of the worker's door: which request heads are new streams, and the
answer a shedding worker gives them before gunicorn's parser and Flask.

The worker (pricefeed/server/accept.py) asks `closed()` for each connection it accepts;
while it is closed, it peeks the connection's complete request head and asks `answer()`.
Only a plain same-origin `GET` of a stream route is answered (no Origin header, whose
answer would need CORS headers — origins.py; no body, which would be left unread): the
`503 at_capacity` JSON the view would send, with the shedder's jittered Retry-After.
Everything else, and every request while the worker is stopping (its answer is the view's
"shutting_down, reconnect now"), takes gunicorn's normal path.

`stream_paths` are the request paths as a browser sends them (a prefix with other than
ASCII arrives percent-encoded). A new stream route registers its path here.
"""
from __future__ import annotations

from typing import Iterable
from urllib.parse import quote

from pricefeed.node import Node
from pricefeed.web.raw_response import raw_json_response


def encoded_path(path: str) -> bytes:
    """`path` as a browser sends it on the request line."""
    return quote(path, safe="/-._~!$&'()*+,;=:@").encode("ascii")


class StreamDoor:
    def __init__(self, node: Node, stream_paths: Iterable[str]):
        self.node = node
        self.stream_paths = frozenset(encoded_path(path) for path in stream_paths)
        # The view's other headers (security_headers.add_common_headers, the CORS Vary).
        self._common_headers = f"Vary: Origin\r\nReferrer-Policy: {node.config.referrer_policy}\r\n"

    def closed(self) -> bool:
        return self.node.shedder.shedding and not self.node.hub.draining

    def answer(self, head: bytes) -> bytes | None:
        if not is_plain_request_for(head, self.stream_paths):
            return None
        shedder = self.node.shedder
        retry_after = shedder.refuse()
        if retry_after is None:
            return None          # it stopped shedding just now: the view decides
        shedder.shed_at_door += 1
        return raw_json_response(503, "SERVICE UNAVAILABLE", "at_capacity", shedder.detail(),
                                 self._common_headers + f"Retry-After: {retry_after}\r\n")


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
