"""The gunicorn master's share of the metrics: the shared directory, and dead workers' files.

prometheus_client's multiprocess mode needs PROMETHEUS_MULTIPROC_DIR set before a
worker imports it, and the directory empty when the server starts (files left by an
earlier run would be summed in). `on_starting` sees to both: it wipes the directory
given, or makes a fresh one per master and removes it again `on_exit`. `child_exit`
deletes a dead worker's live-gauge files, so its clients, mode and leadership stop
counting the moment it is gone (its counters and histograms stay: totals never fall).

These run in the master, which must not import prometheus_client: it loads ssl,
threading and http into the master, and every worker would inherit them unpatched
(gevent patches after the fork). So `child_exit` does what
`prometheus_client.multiprocess.mark_process_dead(pid)` does — remove
`gauge_live*_<pid>.db` — with the standard library (tests/unit/test_metrics.py checks
the two agree).
"""
from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from typing import Any

log = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_CREATED_MARK = "PRICEFEED_METRICS_DIR_CREATED"   # set when on_starting made the directory itself


def prepare_multiprocess_dir(environ: Any = os.environ) -> str:
    """Ensure PROMETHEUS_MULTIPROC_DIR names an empty directory (made fresh when unset); its path."""
    path = environ.get(MULTIPROC_DIR_VARIABLE) or environ.get(MULTIPROC_DIR_VARIABLE.lower())
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
        environ.pop(_CREATED_MARK, None)
    else:
        path = tempfile.mkdtemp(prefix="pricefeed-metrics-")
        environ[_CREATED_MARK] = path
    environ[MULTIPROC_DIR_VARIABLE] = path
    return path


def mark_worker_dead(pid: int, path: str | None = None) -> list[str]:
    """Remove the live-gauge files of worker `pid`; the paths removed."""
    path = path or os.environ.get(MULTIPROC_DIR_VARIABLE)
    removed: list[str] = []
    if not path:
        return removed
    for file in glob.glob(os.path.join(path, f"gauge_live*_{int(pid)}.db")):
        try:
            os.remove(file)
            removed.append(file)
        except FileNotFoundError:
            pass
    return removed


# -- gunicorn server hooks (called from gunicorn.conf.py) -----------------------------------

def on_starting(server: Any) -> None:
    path = prepare_multiprocess_dir()
    server.log.info("pricefeed: metrics of all workers in %s", path)


def child_exit(server: Any, worker: Any) -> None:
    mark_worker_dead(worker.pid)


def on_exit(server: Any) -> None:
    created = os.environ.get(_CREATED_MARK)
    if created and created == os.environ.get(MULTIPROC_DIR_VARIABLE):
        shutil.rmtree(created, ignore_errors=True)
