"""One stream session for both transports (centrifuge's shape: one client lifecycle, transports
that differ only in framing).

`request` parses a stream request once; `session` runs its whole life (check, admit, connect,
snapshot or resume, deliver, close); `sse_transport` and `ws_transport` frame it; `answers`
builds the heads and JSON errors without Flask; `server` knows what gunicorn lets a stream do;
`routes` brings stream requests to the session below Flask (or through it).
"""
