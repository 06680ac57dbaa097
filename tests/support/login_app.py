"""A host app whose own login decides who may stream: a Flask login route sets a session
cookie, and the feed's `@feed.authorize` callback lets a stream open only for a logged-in
user (401 without the cookie, 403 for a user whose plan has no prices).
"""
from __future__ import annotations

import secrets

from flask import Flask, make_response, request

from pricefeed import PriceFeed

SESSION_COOKIE = "shop_session"
PLANS = {"alice": "pro", "bob": "free"}        # bob may log in, but his plan has no live prices

app = Flask(__name__)
feed = PriceFeed(app)
sessions: dict[str, str] = {}      # token -> user (one worker in the test: kept in memory)


@app.post("/login")
def login():
    user = request.form.get("user", "")
    if user not in PLANS:
        return {"error": "unknown_user"}, 403
    token = secrets.token_urlsafe(16)
    sessions[token] = user
    response = make_response({"user": user})
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax")
    return response


@app.post("/logout")
def logout():
    sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
    response = make_response({"user": None})
    response.delete_cookie(SESSION_COOKIE)
    return response


@feed.authorize
def may_stream(stream_request):
    user = sessions.get(stream_request.cookies.get(SESSION_COOKIE, ""))
    if user is None:
        return 401
    return PLANS[user] == "pro"
