"""The web layer: what Flask and gunicorn see.

`extension` is the Flask extension (`PriceFeed(app)`), `api` the streaming API
blueprint, `sse_response` the response body of one stream, `dashboard` the page,
`health` the /health document built from the node, `errors` the JSON error
answers, and `gunicorn_hooks` start and stop the node inside gunicorn's workers
(`pricefeed.gunicorn` is the one-line config that wires them). `assets` finds the
dashboard's files (wheel or checkout), `cli` is `flask pricefeed …` (with `status_report`
and `serve_app`), and `gevent_requirement` is what a server without gevent tells.
"""
