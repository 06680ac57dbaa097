"""The web layer: what Flask and gunicorn see. A folder per concern:

- `extension` — the Flask extension (`PriceFeed(app)`), its state kept per app.
- `http/` — the Flask surface: `api` (the blueprint: /prices, /history, /health and the
  JSON answers for every other path under the prefix), `health` (the /health documents),
  `dashboard` and `assets` (the page and where its files are), and `security_headers`.
- `policy/` — the public endpoint's rules, none of them Flask's or a transport's:
  `client_address` (who a request is from, trusted proxies), `origins` (which pages may use
  the API), `access` (who sees the operator's view), `stream_entry` (who may open a stream,
  both transports) and `client_presence` (a waiting client that leaves).
- `streams/` — one stream's session and its two transports (SSE, WebSocket), served below
  Flask; `door` is the app's side of pricefeed's gunicorn worker's door (pricefeed/server/)
  and `raw_response` its answer written straight to the socket, `ws_operations` a WebSocket
  client's messages, `gevent_requirement` what a server without gevent tells.
- `metrics/` — `series` (a worker's Prometheus series), `view` (/metrics) and
  `process_files` (the gunicorn master's share).
- `cli/` — `flask pricefeed …`: `commands`, `status_report`, `serve_app`.
- `errors` — the client errors every room answers with; `testing` — the fault-injection
  routes, registered only under PRICEFEED_FAULT_INJECTION.
"""

# The key of the extension's per-app state in `app.extensions`. Here, where importing it loads
# nothing else: pricefeed's gunicorn worker reads it in a process that must not load Flask yet.
EXTENSION_KEY = "pricefeed"
