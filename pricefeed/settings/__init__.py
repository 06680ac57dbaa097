"""Settings, declared once, grouped by the subsystem that reads them.

Each group is a frozen dataclass whose fields are the declarations (`declaration.setting`):
the field's name is the variable's (`ws_url`-style attribute, `PRICEFEED_WS_URL`-style
variable), and its metadata holds the parser, bounds, doc and kind. `pricefeed.config.Config`
is the set of groups; docs/configuration.md is generated from them (`reference.py`).

    upstream       the exchange: URLs, pairs, connections, catalogue, REST
    cluster        Redis, Sentinel, the lease, the bus
    delivery       pace, history, flusher, admission, shedding, capacity
    endpoint       the public endpoint: prefix, origins, proxies, per-address caps, headers, tokens
    restart        a graceful stop or restart
    websocket      the WebSocket transport
    observability  logs and metrics

Standard library only (with pricefeed's own base modules): the gunicorn worker loads
settings before the app.
"""
