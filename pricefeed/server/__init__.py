"""pricefeed's gunicorn worker and the parts it is made of.

`worker` is the class (`pricefeed.gunicorn` names it as gunicorn's `worker_class`);
`accept` the listening servers it builds (accept batches, the door while shedding);
`keepalive` which connections sit idle between two requests; `raw_response` the HTTP
answers written to a socket without gunicorn's parser or the app (the door's 503, JSON
for gunicorn's limit errors).

Importing this package imports nothing: gunicorn's master loads the worker class (and
with it gevent, as for gunicorn's own gevent worker) but must not import Flask or redis.
"""
