"""The web layer: what Flask and gunicorn see.

`extension` is the Flask extension (`PriceFeed(app)`), `api` the API blueprint,
`streams/` one stream's session and its two transports (SSE, WebSocket), served below
Flask, `dashboard` the page,
`health` the /health documents (public and detailed) built from the node, `errors`
the JSON error answers, and `stream_door` the app's side of the worker's door
(pricefeed's gunicorn worker, pricefeed/server/, starts and stops the node).
The public endpoint's rules: `client_address` (who a request is from, trusted
proxies), `origins` (which pages may use the API), `access` (who sees the operator's
view), `security_headers` (nosniff, referrer policy, the dashboard's CSP),
`client_presence` (a waiting client that leaves), `stream_admission` (who may open a stream, both transports),
`ws_operations` (a WebSocket client's messages). Metrics: `metrics`,
`metrics_view`, `metrics_process` (the master's share). `assets` finds the
dashboard's files (wheel or checkout), `cli` is `flask pricefeed …` (with
`status_report` and `serve_app`), and `gevent_requirement` is what a server without
gevent tells.
"""
