"""One stream session for both transports (centrifuge's shape: one client lifecycle, transports
that differ only in framing).

`request` parses a stream request once; `session` runs its whole life (check, admit, connect,
snapshot or resume, deliver, close); `sse_transport` and `ws_transport` frame it
(`ws_operations`: a WebSocket client's messages); `answers` builds the heads and JSON errors
without Flask; `server` knows what gunicorn lets a stream do; `routes` brings stream requests
to the session below Flask (or through it), unless `gevent_requirement` refuses them.
pricefeed's gunicorn worker meets streams twice before Flask: `door` (which request heads are
new streams, and the shedding worker's answer, written by `raw_response`) and `handoff`
(a clean stream GET taken from its accept path straight to the session).
"""
