"""The exchange side: where a price enters.

`protocol` parses Binance frames into checked values, `feed` keeps exactly one
WebSocket to the exchange open (rotation, watchdog, reconnects), `connection`
is one such WebSocket, `backoff` paces reconnects under the exchange's limits,
and `rest` polls the REST price endpoint while the WebSocket is down.
Nothing here knows about Redis, browsers or Flask.
"""
