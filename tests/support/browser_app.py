"""A host app for the browser tests: pricefeed embedded, plus test pages on the same origin.

`gunicorn ... tests.support.browser_app:app` serves the API and dashboard as usual, the pages in
tests/browser/pages/ under /test-pages/, and the React bundle (react_vendor.py) from the folder
named by PF_TEST_VENDOR_DIR under /test-vendor/. Every response gets a strict
Content-Security-Policy (no inline script or style; a page's inline import map is allowed by its
hash) unless the app set its own, so the tests also prove the client needs nothing inline.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from flask import Flask, abort, send_from_directory

from pricefeed import PriceFeed

PAGES = Path(__file__).resolve().parents[1] / "browser" / "pages"
_IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)


def _inline_hashes(name: str) -> str:
    """CSP hash sources for the inline import maps of test page `name`."""
    path = PAGES / name
    if not name.endswith(".html") or not path.is_file():
        return ""
    found = _IMPORT_MAP.findall(path.read_text())
    return "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'" for m in found)


def _page_policy(name: str) -> str:
    return "default-src 'self'; script-src 'self'" + _inline_hashes(name) + "; object-src 'none'; base-uri 'none'"


class PagePolicyMiddleware:
    """WSGI middleware, outermost: a test page's policy is its own, whatever policy the app sets
    (so an app-wide `default-src 'self'` cannot block a page's hashed import map). Other paths
    pass through untouched, so streams keep gunicorn's start_response and their direct writes."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/test-pages/"):
            return self.wsgi_app(environ, start_response)
        policy = _page_policy(path.removeprefix("/test-pages/"))

        def with_policy(status, headers, exc_info=None):
            headers = [(k, v) for k, v in headers if k.lower() != "content-security-policy"]
            return start_response(status, headers + [("Content-Security-Policy", policy)], exc_info)
        return self.wsgi_app(environ, with_policy)


app = Flask(__name__, static_folder=None)
feed = PriceFeed(app)


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
    # The dashboard and the API: a strict policy unless the app already set one.
    response.headers.setdefault("Content-Security-Policy", _page_policy(""))
    return response


app.wsgi_app = PagePolicyMiddleware(app.wsgi_app)  # type: ignore[method-assign]  # Flask's way to add middleware
