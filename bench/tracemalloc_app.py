"""pricefeed's app plus one bench-only route that reports what Python allocated per stream.

    PYTHONTRACEMALLOC=1 gunicorn -c gunicorn.conf.py bench.tracemalloc_app:app   (bench/stream_memory.py)

`POST /_bench/tracemalloc/baseline` takes a snapshot; `GET /_bench/tracemalloc?per=N` compares
the current heap with it, grouped by source line, each line's growth divided by N (streams
opened in between). Never part of the service: benchmarks only, loopback only.
"""
from __future__ import annotations

import gc
import tracemalloc

from flask import jsonify, request

from app import create_app

app = create_app()
_baseline: list = []


@app.post("/_bench/tracemalloc/baseline")
def baseline():
    gc.collect()
    _baseline[:] = [tracemalloc.take_snapshot()]
    return jsonify({"traced_kb": tracemalloc.get_traced_memory()[0] // 1024})


@app.get("/_bench/tracemalloc")
def compare():
    gc.collect()
    per = max(1, int(request.args.get("per", "1")))
    group = request.args.get("by", "lineno")
    current = tracemalloc.take_snapshot()
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = current.filter_traces(filters).compare_to(_baseline[0].filter_traces(filters), group)
    total = sum(s.size_diff for s in stats)
    focus = request.args.get("focus")
    if focus:    # the full tracebacks of the top growths whose innermost frame is in `focus`
        stats = [st for st in stats if focus in st.traceback[-1].filename or focus in st.traceback[0].filename]
        return jsonify([{"bytes_per_stream": round(st.size_diff / per, 1),
                         "traceback": st.traceback.format()[-24:]} for st in stats[:6]])
    return jsonify({"per": per, "total_bytes_per_stream": round(total / per, 1),
                    "top": [{"where": str(s.traceback), "bytes_per_stream": round(s.size_diff / per, 1),
                             "blocks_per_stream": round(s.count_diff / per, 2)} for s in stats[:30]]})
