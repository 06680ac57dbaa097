"""`--env SETTING=VALUE`, the benches' way to run pricefeed with a setting changed.

`SETTING` is written without its `PRICEFEED_` prefix (`LAG_BOUND=0.075`); a name that already
has it is taken as it is.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable

PREFIX = "PRICEFEED_"


def add_settings_argument(parser: argparse.ArgumentParser, applies_to: str) -> None:
    parser.add_argument("--env", action="append", default=[], metavar="SETTING=VALUE",
                        help=f"a pricefeed setting for {applies_to}, without its {PREFIX} prefix "
                             "(repeatable), e.g. LAG_BOUND=0.075")


def pricefeed_settings(items: Iterable[str]) -> dict[str, str]:
    """The environment variables `--env` asks for: {"PRICEFEED_LAG_BOUND": "0.075", ...}."""
    settings = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env wants SETTING=VALUE, got {item!r}")
        settings[name if name.startswith(PREFIX) else PREFIX + name] = value
    return settings
