"""The service's app with one more route, for tests only: what each open stream's greenlet
has on its stack, read from the worker that serves the request.

The test looks at the frames a parked stream keeps (the worker must not wrap each
connection's handler) and which path it came by (gunicorn's handler, or the worker's
hand-off of a clean stream GET); the product never walks frames.
"""
from __future__ import annotations

import gc
from types import FrameType

from flask import jsonify
from greenlet import greenlet

from app import app


@app.get("/_test/stream-stacks")
def stream_stacks():
    stacks: list[list[str]] = []
    for candidate in gc.get_objects():
        if not isinstance(candidate, greenlet) or candidate.gr_frame is None:
            continue
        frames = []
        frame: FrameType | None = candidate.gr_frame
        while frame is not None:
            frames.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
            frame = frame.f_back
        if any(f.endswith("pricefeed/web/streams/session.py:_deliver") for f in frames):
            stacks.append(frames[::-1])       # outermost first
    return jsonify(stacks=stacks)
