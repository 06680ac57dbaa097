"""Client errors: every error a client can cause is `{"error": ..., "detail": ...}` with a 4xx.

Nothing a client sends reaches a 500. The 503s that tell a browser to come back
later are built here, each in one place, with the Retry-After the browser honours.
Written out by the blueprint (http/api.py json_error) or, below Flask, by the stream
routes (streams/answers.py error_answer).
"""
from __future__ import annotations

import random

AT_CAPACITY_RETRY_AFTER_S = 5


class ApiError(Exception):
    """A client error: answered as JSON with this status."""

    def __init__(self, status: int, error: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


def at_capacity(detail: str = "this worker streams to its maximum number of clients",
                retry_after: int = AT_CAPACITY_RETRY_AFTER_S, jitter: int = 10) -> ApiError:
    return ApiError(503, "at_capacity", detail, {"Retry-After": str(retry_after + random.randint(0, jitter))})


TOO_MANY_STREAMS_RETRY_AFTER_S = 30


def too_many_streams(limit: int | None) -> ApiError:
    # Long: the streams this address holds stay open; one more would only come when one ends.
    return ApiError(429, "too_many_streams", f"your address already holds {limit} streams on this service",
                    {"Retry-After": str(TOO_MANY_STREAMS_RETRY_AFTER_S + random.randint(0, 30))})


def shutting_down() -> ApiError:
    # A short Retry-After: the browser should reconnect at once, to another worker.
    return ApiError(503, "shutting_down", "this server is restarting; reconnect", {"Retry-After": "1"})
