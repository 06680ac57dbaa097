"""What one worker's delivery has done: the counters /health and the metrics read.

One object, shared by the parts that count (the hub, the flusher, the stream sessions and
admission), each adding to its own fields; readers only read it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class DeliveryCounters:
    ticks_delivered: int = 0           # ticks taken into the price book
    ticks_fenced: int = 0              # ticks dropped for an epoch older than the newest seen
    clients_total: int = 0             # streams registered since start
    clients_refused: int = 0           # streams refused at the client cap
    clients_direct: int = 0            # open streams the flusher writes to directly (a level, not a total)
    flushes: int = 0
    writes: int = 0
    skipped_busy: int = 0              # visits to a client whose socket was still full
    events_written: int = 0
    conflated: int = 0                 # ticks a client never got because a newer price replaced them
    slow_client_disconnects: int = 0
