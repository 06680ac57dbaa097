"""Delay packets in user space, for kernels built without sch_netem: an NFQUEUE listener.

    ip netns exec NS python -m tests.support.packet_delay QUEUE DELAY_MS [JITTER_MS]

Packets an iptables rule sends to queue QUEUE (`-j NFQUEUE --queue-num QUEUE --queue-bypass`)
are held for DELAY_MS (± JITTER_MS, uniform, never overtaking) and then accepted. Only the
packet ids travel to user space (copy mode META); the kernel keeps the packets. Speaks
nfnetlink_queue over a raw netlink socket (no library needed). With `--queue-bypass`, packets
pass undelayed whenever this process is not running. Prints `ready` once bound.
"""
from __future__ import annotations

import heapq
import random
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _message(kind: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def _attrs(data: bytes) -> dict[int, bytes]:
    found, offset = {}, 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x7FFF] = data[offset + 4: offset + length]
        offset += (length + 3) & ~3
    return found


def bind(queue: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    commands = [
        _attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET)),
        _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
    ]
    for seq, attr in enumerate(commands, 1):
        sock.send(_message(NFQNL_MSG_CONFIG, queue, attr, NLM_F_REQUEST | NLM_F_ACK, seq))
        reply = sock.recv(65536)
        kind = struct.unpack_from("=H", reply, 4)[0]
        error = struct.unpack_from("=i", reply, 16)[0] if kind == NLMSG_ERROR else 0
        if error:
            raise OSError(-error, f"nfnetlink_queue config for queue {queue} failed")
    return sock


def run(queue: int, delay_ms: float, jitter_ms: float) -> None:
    sock = bind(queue)
    print("ready", flush=True)
    due: list[tuple[float, int, int]] = []       # (release time, arrival order, packet id)
    order, last_release = 0, 0.0
    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else 1.0
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    header = _attrs(data[offset + 20: offset + length]).get(NFQA_PACKET_HDR)
                    if header:
                        packet_id = struct.unpack_from("!I", header)[0]
                        hold = (delay_ms + random.uniform(-jitter_ms, jitter_ms)) / 1000
                        order += 1
                        # In order, as on a wire: jitter never lets a packet overtake an earlier one.
                        last_release = max(last_release, time.monotonic() + max(0.0, hold))
                        heapq.heappush(due, (last_release, order, packet_id))
                offset += (length + 3) & ~3 if length else len(data)
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, packet_id = heapq.heappop(due)
            sock.send(_message(NFQNL_MSG_VERDICT, queue,
                               _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))))


if __name__ == "__main__":
    run(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
