"""The cluster side: one publisher for the whole deployment, every worker a subscriber.

`lease` elects and fences the leader, `bus` is the interface that carries ticks
from the leader to every worker (`memory_bus` for one process, `redis_bus` for a
deployment), and `fallback` derives the service's mode from what still works.
Nothing here knows about browsers or Flask.
"""
