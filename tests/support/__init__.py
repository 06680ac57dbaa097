"""Helpers that start the real processes the tests talk to (simulator, redis-server, gunicorn)."""
