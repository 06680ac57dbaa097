"""`flask pricefeed …`: registered by init_app, as Flask-Migrate registers `flask db`.

    flask pricefeed status [--url URL] [--json]   mode, leader, epoch, age of each pair
    flask pricefeed simulate [simulator options]  the Binance-protocol simulator
    flask pricefeed serve [--host H --port P]     the app under gunicorn's gevent worker (development)

`simulate` and `serve` replace this process (exec) rather than run in it: the CLI has
already imported Flask, the app and redis without gevent's patching, and patching that
late is exactly what docs/library-facts.md warns about. `serve` starts gunicorn with
`-c python:pricefeed.gunicorn` (the one-line setup) and loads the same app Flask's CLI
found (`--app` / FLASK_APP) inside the worker, after it has patched.
"""
from __future__ import annotations

import json
import os
import sys

import click
from flask import current_app
from flask.cli import AppGroup, ScriptInfo

from pricefeed.web import EXTENSION_KEY
from pricefeed.web.cli.status_report import StatusUnreadable, render, status_from_health, status_from_redis

SERVE_APP_VARIABLE = "PRICEFEED_SERVE_APP"   # read by pricefeed.web.cli.serve_app in the worker
EXIT_LIVE, EXIT_NOT_LIVE, EXIT_UNREADABLE = 0, 1, 2


def create_cli_group() -> AppGroup:
    group = AppGroup("pricefeed", help="pricefeed: status of the deployment, the simulator, a gevent dev server.")

    @group.command("status")
    @click.option("--url", help="Base URL of a running instance (e.g. http://127.0.0.1:8000): read its detailed "
                                "health instead of Redis.")
    @click.option("--token", envvar="PRICEFEED_ADMIN_TOKEN", help="Admin token sent with --url "
                  "(Authorization: Bearer); default PRICEFEED_ADMIN_TOKEN.")
    @click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds per request.")
    @click.option("--as-json", "--json", "as_json", is_flag=True, help="Print one JSON object.")
    def status(url: str | None, token: str | None, timeout: float, as_json: bool) -> None:
        """Mode, leader, epoch and each pair's age: from Redis (PRICEFEED_REDIS_URL) or --url.

        Exit status: 0 live, 1 not live (no leader, no data), 2 could not read.
        """
        config = current_app.extensions[EXTENSION_KEY].config
        try:
            if url:
                report = status_from_health(url.rstrip("/") + config.endpoint.url_prefix + "/health", token, timeout)
            elif config.cluster.redis_url:
                report = status_from_redis(config, timeout)
            else:
                raise click.UsageError("no Redis configured (PRICEFEED_REDIS_URL) to read the deployment from: "
                                       "pass --url of a running instance")
        except StatusUnreadable as exc:
            click.echo(f"pricefeed status: {exc}", err=True)
            sys.exit(EXIT_UNREADABLE)
        click.echo(json.dumps(report, indent=2) if as_json else render(report))
        sys.exit(EXIT_LIVE if report["mode"] == "live" else EXIT_NOT_LIVE)

    @group.command("simulate", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                                 "help_option_names": []})
    @click.argument("simulator_args", nargs=-1, type=click.UNPROCESSED)
    def simulate(simulator_args: tuple[str, ...]) -> None:
        """Run the Binance-protocol simulator; options are passed on (try `flask pricefeed simulate --help`)."""
        _exec_python(["-m", "pricefeed.simulator", *simulator_args])

    @group.command("serve")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", type=int, default=5000, show_default=True)
    @click.option("--workers", type=int, default=1, show_default=True,
                  help="gunicorn workers (more than one only with PRICEFEED_REDIS_URL: each worker without "
                       "Redis opens its own exchange connection)")
    @click.option("--reload", is_flag=True, help="Restart the workers when the code changes.")
    @click.pass_context
    def serve(ctx: click.Context, host: str, port: int, workers: int, reload: bool) -> None:
        """Run the app correctly for development: gunicorn with pricefeed's worker.

        Use this instead of `flask run`, whose threaded server has no gevent (no prices, streams 503).
        """
        info = ctx.find_object(ScriptInfo)
        env = dict(os.environ)
        if info is not None and info.app_import_path:
            env[SERVE_APP_VARIABLE] = info.app_import_path
        args = ["-m", "gunicorn", "-c", "python:pricefeed.gunicorn", "--bind", f"{host}:{port}",
                "--workers", str(workers), "--no-control-socket", "--graceful-timeout", "5"]
        if reload:
            args.append("--reload")
        _exec_python([*args, "pricefeed.web.cli.serve_app:app"], env)

    return group


def _exec_python(args: list[str], env: dict[str, str] | None = None) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *args], env if env is not None else dict(os.environ))
