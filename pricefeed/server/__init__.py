"""pricefeed's gunicorn worker and the parts it is made of.

`worker` is the class (`pricefeed.gunicorn` names it as gunicorn's `worker_class`);
`accept` the listening servers it builds (accept batches, the door while shedding);
`keepalive` which connections sit idle between two requests; `limits` the JSON answers
to gunicorn's own limit errors.

Importing this package imports nothing: gunicorn's master loads the worker class (and
with it gevent, as for gunicorn's own gevent worker) but must not import Flask or redis.
"""
