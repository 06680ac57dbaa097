"""docs/configuration.md, generated from the declarations:

    python -m pricefeed.settings.reference > docs/configuration.md

tests/unit/test_configuration_reference.py fails while the committed file differs from what
this prints.
"""
from __future__ import annotations

import sys

from pricefeed.config import GROUPS
from pricefeed.settings.declaration import OPERATOR, TUNING, Setting
from pricefeed.settings.parsers import TYPE_NAMES

COMMAND = "python -m pricefeed.settings.reference > docs/configuration.md"


# Variables that gunicorn.conf.py, app.py and run.sh read themselves (not settings of Config).
READ_ELSEWHERE: tuple[tuple[str, str, str], ...] = (
    ("PRICEFEED_BIND", "`127.0.0.1:8000`", "gunicorn.conf.py: the address(es) to listen on, comma-separated."),
    ("PRICEFEED_WORKERS", "1 without Redis, else 2", "gunicorn.conf.py: gunicorn workers."),
    ("PRICEFEED_LOG_LEVEL", "`INFO`", "gunicorn.conf.py and app.py: the log level."),
    ("PRICEFEED_ACCESS_LOG", "unset: off", "gunicorn.conf.py: where gunicorn writes its access log (`-`: stdout)."),
    ("PROMETHEUS_MULTIPROC_DIR", "a fresh temp directory per gunicorn master",
     "gunicorn.conf.py: where workers keep their metrics; given, emptied of `*.db` at start."),
    ("PRICEFEED_SIMULATOR_PORT", "`9900`", "`./run.sh --simulate`: the simulator's port."),
)


def default_text(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        return f"`{','.join(str(item) for item in value)}`" if value else "empty"
    if isinstance(value, float):
        return f"`{_number(value)}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def type_text(declared: Setting) -> str:
    kind = TYPE_NAMES.get(declared.parse) or declared.parse.__name__
    if declared.minimum is None and declared.maximum is None:
        return kind
    low = "" if declared.minimum is None else _number(declared.minimum)
    high = "" if declared.maximum is None else _number(declared.maximum)
    return f"{kind}, {low} – {high}"


def _number(value: float) -> str:
    """A bound as the reference shows it: 60, not 60.0; 0.2 as written."""
    return str(int(value)) if value == int(value) else repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference() -> str:
    lines = [
        f"<!-- Generated from pricefeed/settings/ by `{COMMAND}`: edit the declarations, not this file. -->",
        "",
        "# Configuration reference",
        "",
        "Every setting is an environment variable and, with the same name, an `app.config` key; `app.config` "
        "wins over the environment. An invalid or out-of-bounds value stops start-up with a `ConfigError` "
        "that names the variable (never its value). Settings are grouped by the subsystem that reads them; "
        "in code, `config.<group>.<name>` (`config.upstream.upstream_url`).",
        "",
        f"Kind: **{OPERATOR}** — what a deployment decides (where things are, who may use it, what it serves); "
        f"**{TUNING}** — a knob whose default is right unless a measurement says otherwise.",
        "",
    ]
    for group in GROUPS:
        module = group.__module__.replace(".", "/") + ".py"
        lines += [f"## {group.TITLE}", "",
                  f"{group.SUMMARY} In code: `config.{group.ATTRIBUTE}` (`{group.__name__}`, {module}).", "",
                  "| Variable | Default | Type, bounds | Kind | Meaning |",
                  "|---|---|---|---|---|"]
        for declared in group.settings():
            lines.append(f"| `{declared.variable}` | {_cell(default_text(declared.default))} | "
                         f"{_cell(type_text(declared))} | {declared.kind} | {_cell(declared.doc)} |")
        lines.append("")
    lines += ["## Read by gunicorn.conf.py, app.py and run.sh", "",
              "Not settings of the extension: the bundled server configuration reads these itself.", "",
              "| Variable | Default | Meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {default} | {_cell(doc)} |" for name, default, doc in READ_ELSEWHERE]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(reference())
