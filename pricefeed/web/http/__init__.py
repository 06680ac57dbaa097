"""The Flask surface: the API blueprint, /health, the dashboard and the headers they carry."""
