"""A bare gevent SSE server: the anchor the open-cost and delivery benchmarks compare pricefeed with.

    python -m bench.bare_sse_server --port 8100 [--tick-rate 20 --pairs 10] [--pywsgi]

What any SSE server must do and nothing more: gevent's StreamServer, the request head read
and split into its line and headers, a `retry:` line (jittered) and a `snapshot` event of
the pairs asked for, then the stream held open until the client leaves. With
`--tick-rate`, one greenlet broadcasts a `price` event per pair per tick to every client
(one chunk per tick, one send per client), as a bare broadcast would. `--pywsgi`: the same
stream as a WSGI app under gevent.pywsgi (a real HTTP parser and chunked framing; no
broadcast). Prints `listening on http://H:P` when ready.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.baseserver import BaseServer  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
        b"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n")
clients: set = set()


def handle(sock, address) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(8192)
        if not chunk or len(head) > 65536:
            sock.close()
            return
        head += chunk
    request_line, *header_lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(":", 1) for line in header_lines if ":" in line)
    method, target, _ = request_line.split(" ", 2)
    if method != "GET" or not target.split("?", 1)[0].endswith("/stream"):
        sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        sock.close()
        return
    pairs = parse_qs(urlsplit(target).query).get("pairs", ["BTC/USD"])[0].split(",")
    snapshot = {"prices": [{"pair": p, "price": "1.00", "ts": int(time.time() * 1000)} for p in pairs],
                "mode": "live", "resume": headers.get("Last-Event-ID")}
    sock.sendall(HEAD + b"retry: %d\n\nevent: snapshot\ndata: %s\n\n"
                 % (1000 + random.randint(0, 4000), json.dumps(snapshot, separators=(",", ":")).encode()))
    clients.add(sock)
    try:
        while sock.recv(4096):       # held until the client leaves (EOF)
            pass
    except OSError:
        pass
    finally:
        clients.discard(sock)
        sock.close()


def broadcast(rate: float, pairs: int) -> None:
    seq = 0
    while True:
        gevent.sleep(1 / rate)
        seq += 1
        chunk = b"".join(b'id: 1-%d\nevent: price\ndata: {"pair":"P%d/USD","price":"%d.00"}\n\n' % (seq, p, seq)
                         for p in range(pairs))
        for sock in list(clients):
            try:
                sock.sendall(chunk)
            except OSError:
                clients.discard(sock)


def wsgi_stream(environ, start_response):
    """--pywsgi: the same answer through gevent's WSGI server."""
    if environ["REQUEST_METHOD"] != "GET" or not environ["PATH_INFO"].endswith("/stream"):
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    pairs = parse_qs(environ.get("QUERY_STRING", "")).get("pairs", ["BTC/USD"])[0].split(",")
    snapshot = {"prices": [{"pair": p, "price": "1.00", "ts": int(time.time() * 1000)} for p in pairs],
                "mode": "live", "resume": environ.get("HTTP_LAST_EVENT_ID")}
    start_response("200 OK", [("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
                              ("X-Accel-Buffering", "no")])
    rfile = environ["wsgi.input"].rfile

    def body():
        yield b"retry: %d\n\nevent: snapshot\ndata: %s\n\n" % (
            1000 + random.randint(0, 4000), json.dumps(snapshot, separators=(",", ":")).encode())
        try:
            while rfile.read1(4096):     # held until the client leaves (EOF)
                pass
        except OSError:
            pass
    return body()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--tick-rate", type=float, default=0.0, help="ticks per second broadcast (0: none)")
    parser.add_argument("--pairs", type=int, default=10, help="price events per tick")
    parser.add_argument("--pywsgi", action="store_true", help="serve through gevent.pywsgi (no broadcast)")
    args = parser.parse_args()
    if args.pywsgi:
        from gevent.pywsgi import WSGIServer
        server: BaseServer = WSGIServer((args.host, args.port), wsgi_stream, backlog=4096, log=None)
    else:
        server = StreamServer((args.host, args.port), handle, backlog=4096)
    server.start()
    if args.tick_rate > 0:
        gevent.spawn(broadcast, args.tick_rate, args.pairs)
    print(f"listening on http://{args.host}:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
