"""Delivery: from this worker's one subscription to every browser.

`hub` keeps the latest prices and the clients, `flusher` writes each client what
is new (one write per client per flush), `stream_client` is one client's state
and socket, `sse` frames Server-Sent Events, and `admission` paces new streams.
Nothing here knows about Flask: the web layer hands over sockets and requests.
"""
