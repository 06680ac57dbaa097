"""The web layer: what Flask and gunicorn see.

`extension` is the Flask extension (`PriceFeed(app)`), `api` the streaming API
blueprint, `sse_response` the response body of one stream, `dashboard` the page,
`health` the /health document built from the node, `errors` the JSON error
answers, and `gunicorn_hooks` start and stop the node inside gunicorn's workers.
"""
