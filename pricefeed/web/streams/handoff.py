"""A stream request taken straight from the worker's accept path to the stream session.

Profiled over 4,000 opens, a third of a stream's open went to gunicorn's per-connection
path for one request it never needs: the request parser, its Request object and environ,
the keep-alive loop around them. When pricefeed's worker (pricefeed/server/handoff.py)
sees a just-accepted connection's complete request head, it asks `environ_for(head)`:
for a clean `GET {prefix}/stream?...` over HTTP/1.1 that is the minimal WSGI environ
gunicorn would have built; the worker consumes the head and `serve` runs the same
StreamRoutes.serve on it — the same session, so every rule of the public endpoint holds
(origins, caps, admission, shedding, stopping, @feed.authorize, lifetime, resume). The
stream owns its connection as it does under gunicorn when nothing rewrites its response;
an error answer is written here, JSON as always, and the connection closed.

Anything that is not plainly such a request returns None and takes gunicorn's normal path,
unread: another method, path or version; a body (Content-Length, Transfer-Encoding); an
`Expect`, an `Upgrade`; a header gunicorn reads for itself (its secure-scheme headers) or
maps with care (a name with `_`, a repeated name, a folded line, a control character); a
request line or header count past gunicorn's limits (its JSON 414/431 answer them); a target
with a fragment or bytes outside printable ASCII. The worker offers no hand-off at all when
gunicorn would do something per request here: an access log, request hooks, max_requests,
the PROXY protocol, TLS or uwsgi, a SCRIPT_NAME; nor when the app is wrapped in a middleware
(`app.wsgi_app` is no longer StreamRoutes: it must see every stream).
"""
from __future__ import annotations

import io
import re
import sys
from typing import TYPE_CHECKING, Any

from pricefeed.web.streams.door import encoded_path
from pricefeed.web.streams.server import HANDED_OFF_KEY, already_handled, http_date
from pricefeed.web.streams.sse_transport import SseTransport

if TYPE_CHECKING:
    from pricefeed.web.streams.routes import StreamRoutes

# Header lines gunicorn would map as they are: a token name without `_`, a value without
# control characters; no folded line.
_FIELDS = re.compile(rb"(?:[!#$%&'*+\-.^`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
_TARGET_OK = re.compile(rb"[\x21-\x7e]+")
# Headers whose meaning gunicorn applies itself (a body, 100-continue, an upgrade).
_NOT_OURS = frozenset({"CONTENT-LENGTH", "TRANSFER-ENCODING", "EXPECT", "UPGRADE"})
_EMPTY_INPUT = io.BytesIO(b"")          # a GET's body: nothing (shared: reading it gives b"")


class StreamHandOff:
    """The app's side of the worker's hand-off (docs/gunicorn-worker.md)."""

    def __init__(self, routes: StreamRoutes, prefix: str, cfg: Any, server_address: tuple):
        self.routes = routes
        self.path = encoded_path(prefix.rstrip("/") + "/stream")
        self.max_line = cfg.limit_request_line or 1 << 30
        self.max_fields = cfg.limit_request_fields
        self.max_field = cfg.limit_request_field_size or 1 << 30
        self.not_ours = _NOT_OURS | {name.upper() for name in cfg.secure_scheme_headers}
        from gunicorn import SERVER_SOFTWARE
        self.base = {
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": _EMPTY_INPUT,
            "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": cfg.workers > 1,
            "wsgi.run_once": False, "SERVER_SOFTWARE": SERVER_SOFTWARE, "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": routes.sse_path,
            "SERVER_NAME": str(server_address[0]), "SERVER_PORT": str(server_address[1]), HANDED_OFF_KEY: True,
        }

    def environ_for(self, head: bytes, sock: Any, client_address: tuple) -> dict | None:
        """The WSGI environ of this complete request head if it is a clean stream GET; else None."""
        routes = self.routes
        if routes.flask_app.wsgi_app is not routes:
            return None            # a middleware was put around the app after PriceFeed: it sees every stream
        request_line, _, fields = head[:-2].partition(b"\r\n")
        if len(request_line) > self.max_line or not request_line.startswith(b"GET ") \
                or not request_line.endswith(b" HTTP/1.1"):
            return None
        target = request_line[4:-9]
        path, _, query = target.partition(b"?")
        if path != self.path or not _TARGET_OK.fullmatch(target) or b"#" in target:
            return None
        if not _FIELDS.fullmatch(fields):
            return None            # a folded line, a bad name or value: gunicorn's parser decides
        lines = fields.decode("latin-1").split("\r\n")
        lines.pop()                # after the last line's CRLF
        if len(lines) > self.max_fields or max(map(len, lines), default=0) > self.max_field:
            return None
        environ = self.base.copy()
        environ["QUERY_STRING"] = query.decode("latin-1")
        environ["RAW_URI"] = target.decode("latin-1")
        environ["gunicorn.socket"] = sock
        environ["REMOTE_ADDR"] = str(client_address[0])
        environ["REMOTE_PORT"] = str(client_address[1])
        not_ours = self.not_ours
        for line in lines:
            name, _, value = line.partition(":")
            name = name.upper()
            if name in not_ours:
                return None
            key = "HTTP_" + name.replace("-", "_")
            if key in environ:
                return None        # repeated: gunicorn joins or refuses it
            environ[key] = value.strip(" \t")
        if "HTTP_HOST" not in environ:
            return None
        return environ

    def serve(self, environ: dict) -> None:
        """Run the stream (or its refusal) on this connection; the caller closes it after."""
        answer: list = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> None:
            answer[:] = [status, headers]

        result = self.routes.serve(environ, start_response, SseTransport)
        if result is already_handled():
            return                 # the stream wrote its own head and ran to its end
        write_answer(environ["gunicorn.socket"], answer[0], answer[1], result)


def write_answer(sock: Any, status: str, headers: list, body: Any) -> None:
    """An answer the stream did not write itself (a JSON error, or a stream whose headers it could
    not write as is): HTTP/1.1, `Connection: close`, chunked unless it has a Content-Length."""
    chunked = not any(key.lower() == "content-length" for key, _ in headers)
    lines = [f"HTTP/1.1 {status}\r\nDate: {http_date()}\r\nConnection: close\r\n"]
    if chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    lines.extend(f"{key}: {value}\r\n" for key, value in headers)
    lines.append("\r\n")
    pending = "".join(lines).encode("latin-1", "replace")
    try:
        for chunk in body:
            if not chunk:
                continue
            pending += b"%X\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
            sock.sendall(pending)
            pending = b""
        sock.sendall(pending + (b"0\r\n\r\n" if chunked else b""))
    except OSError:
        pass                       # the client left
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
