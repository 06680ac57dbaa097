"""The WSGI app for `flask pricefeed serve`: the app Flask's CLI would load, loaded in the worker.

gunicorn imports this inside each worker, after gevent has patched, so the host's app
(named by `--app` / FLASK_APP, passed on as PRICEFEED_SERVE_APP) is imported patched.
Flask's own discovery rules apply (`module`, `module:app`, `module:create_app()`, a path).
"""
from __future__ import annotations

import os

from flask.cli import ScriptInfo

from pricefeed.web.cli.commands import SERVE_APP_VARIABLE

app = ScriptInfo(app_import_path=os.environ.get(SERVE_APP_VARIABLE) or None).load_app()
