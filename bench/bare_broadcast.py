"""The delivery anchor of bench/fanout.py (`--target bare`): a bare gevent SSE broadcast.

    python -m bench.bare_broadcast --port 8001 --upstream ws://127.0.0.1:9000 --pairs BTC/USD,ETH/USD

What any gevent server streaming one feed to everyone does, and nothing more: K
forked processes on one listening socket (as gunicorn's workers), each reading the
exchange's combined aggTrade stream itself, building one chunk per trade (an SSE
event shaped like pricefeed's, framed as an HTTP/1.1 chunk) and sending it to every
client with one send() each. No pairs per client, no conflation, no slow-client
policy (a full buffer makes the broadcast wait), no ids that resume, no Redis.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402

import gevent  # noqa: E402
import websocket  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
clients: set[socket.socket] = set()
latest: dict[str, dict] = {}


def chunk(data: bytes) -> bytes:
    return b"%X\r\n%s\r\n" % (len(data), data)


SOCKET_OPTIONS: list[tuple[int, int, int]] = []    # --nodelay / --sndbuf: what pricefeed's streams have


def serve(sock: socket.socket, _address) -> None:
    """Read the request head, send the response head and a snapshot, then hold the stream until EOF."""
    for level, option, value in SOCKET_OPTIONS:
        sock.setsockopt(level, option, value)
    request = b""
    while b"\r\n\r\n" not in request:
        data = sock.recv(4096)
        if not data or len(request) > 8192:
            return
        request += data
    snapshot = json.dumps({"prices": list(latest.values())}, separators=(",", ":")).encode()
    sock.sendall(HEAD + chunk(b"event: snapshot\ndata: " + snapshot + b"\n\n"))
    clients.add(sock)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass
    finally:
        clients.discard(sock)


def broadcast(upstream: str, pairs: list[str]) -> None:
    pair_of = {pair.split("/")[0] + "USDT": pair for pair in pairs}   # as bench/fanout_scenarios.py
    streams = "/".join(f"{symbol.lower()}@aggTrade" for symbol in pair_of)
    ws = websocket.create_connection(f"{upstream}/stream?streams={streams}", timeout=None)
    seq = 0
    while True:
        data = json.loads(ws.recv()).get("data", {})
        pair = pair_of.get(data.get("s"))
        if pair is None:
            continue
        seq += 1
        body = {"pair": pair, "symbol": data["s"], "price": data["p"], "ts": data["E"], "source": "exchange",
                "stale": False}
        latest[pair] = body
        event = b"id: 1-%d\nevent: price\ndata: %s\n\n" % (seq, json.dumps(body, separators=(",", ":")).encode())
        framed = chunk(event)             # built once per tick
        for sock in list(clients):        # one send per client
            try:
                sent = sock.send(framed)
                if sent < len(framed):
                    sock.sendall(framed[sent:])
            except OSError:
                clients.discard(sock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the exchange's WebSocket base, ws://host:port")
    parser.add_argument("--pairs", required=True, help="comma-separated, e.g. BTC/USD,ETH/USD")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--nodelay", action="store_true", help="TCP_NODELAY on each stream (gunicorn sets it)")
    parser.add_argument("--sndbuf", type=int, default=0, help="SO_SNDBUF of each stream (pricefeed: 32768)")
    args = parser.parse_args()
    if args.nodelay:
        SOCKET_OPTIONS.append((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1))
    if args.sndbuf:
        SOCKET_OPTIONS.append((socket.SOL_SOCKET, socket.SO_SNDBUF, args.sndbuf))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(4096)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            gevent.reinit()
            gevent.spawn(broadcast, args.upstream, args.pairs.split(","))
            StreamServer(listener, serve).serve_forever()
            os._exit(0)
        children.append(pid)

    def stop(*_) -> None:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    print("serving", flush=True)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
