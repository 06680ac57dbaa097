"""Prometheus metrics: a worker's series, the /metrics view, and the gunicorn master's files."""
