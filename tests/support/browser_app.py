"""A host app for the browser tests: pricefeed embedded, plus test pages on the same origin.

`gunicorn ... tests.support.browser_app:app` serves the API and dashboard as usual, the pages in
tests/browser/pages/ under /test-pages/, and the React bundle (react_vendor.py) from the folder
named by PF_TEST_VENDOR_DIR under /test-vendor/. Every response without its own
Content-Security-Policy gets a strict one (no inline script or style; the one inline import map
of a page is allowed by its hash), so the tests also prove the client needs nothing inline.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from flask import Flask, abort, request, send_from_directory

from pricefeed import PriceFeed

PAGES = Path(__file__).resolve().parents[1] / "browser" / "pages"
_IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)

app = Flask(__name__, static_folder=None)
feed = PriceFeed(app)


def _inline_hashes(name: str) -> str:
    path = PAGES / name
    if not name.endswith(".html") or not path.is_file():
        return ""
    found = _IMPORT_MAP.findall(path.read_text())
    return "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'" for m in found)


@app.route("/test-pages/<path:name>")
def test_page(name: str):
    return send_from_directory(PAGES, name, max_age=0)


@app.route("/test-vendor/<path:name>")
def test_vendor(name: str):
    folder = os.environ.get("PF_TEST_VENDOR_DIR")
    if not folder:
        abort(404)
    return send_from_directory(folder, name, max_age=0)


@app.after_request
def _strict_csp(response):
    if "Content-Security-Policy" not in response.headers:
        page = request.path.removeprefix("/test-pages/") if request.path.startswith("/test-pages/") else ""
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'" + _inline_hashes(page) + "; object-src 'none'; base-uri 'none'")
    return response
