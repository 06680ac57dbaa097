"""One setting, one statement: a dataclass field whose metadata is its declaration.

    @dataclass(frozen=True)
    class UpstreamSettings(SettingsGroup):
        TITLE = "Upstream"
        upstream_url: str = setting(parsers.url("ws", "wss"), "wss://...", "Exchange WebSocket base.",
                                    kind=OPERATOR)

The variable is PRICEFEED_ + the field's name in upper case; `app.config[variable]` wins over
the environment. An invalid value is a ConfigError that names the variable and never echoes
the value (it may be a credential).
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pricefeed.settings import parsers

PREFIX = "PRICEFEED_"
OPERATOR = "operator"     # what a deployment decides: where things are, who may use it, what it serves
TUNING = "tuning"         # a knob whose default is right unless a measurement says otherwise
_KEY = "pricefeed.setting"


class ConfigError(ValueError):
    """A PRICEFEED_* setting is missing, malformed or out of range."""


@dataclass(frozen=True)
class Setting:
    """What is declared about one variable."""

    parse: Callable[[str], Any]
    default: Any
    doc: str
    kind: str = TUNING
    minimum: float | None = None
    maximum: float | None = None
    name: str = ""                 # without the PRICEFEED_ prefix; the field's name, upper case
    group: str = ""                # the group's attribute on Config ("upstream", ...)

    @property
    def variable(self) -> str:
        return PREFIX + self.name

    @property
    def attribute(self) -> str:
        return self.name.lower()

    def value_of(self, raw: Any) -> Any:
        """`raw` (text from the environment, or a typed value from app.config) parsed and bounded."""
        # app.config may hold already-typed values (True, 3.0, a list of pairs).
        if self.parse in parsers.LIST_PARSERS and isinstance(raw, (list, tuple)):
            raw = ",".join(str(item) for item in raw)
        text = raw if isinstance(raw, str) else str(raw)
        # Number parsers put the text in their messages, so not theirs.
        try:
            value = self.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{self.variable} is invalid: {_EXPECTED.get(self.parse) or exc}") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{self.variable} is not a number")
            if self.minimum is not None and value < self.minimum:
                raise ConfigError(f"{self.variable} is below the minimum {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise ConfigError(f"{self.variable} is above the maximum {self.maximum:g}")
        return value


_EXPECTED: dict[Callable, str] = {int: "expected a whole number", float: "expected a number"}


def setting(parse: Callable[[str], Any], default: Any, doc: str, *, kind: str = TUNING,
            minimum: float | None = None, maximum: float | None = None) -> Any:
    """A settings group's field, declared: its default is the field's default."""
    return dataclasses.field(default=default, metadata={
        _KEY: Setting(parse, default, doc, kind, minimum, maximum)})


G = TypeVar("G", bound="SettingsGroup")


class SettingsGroup:
    """Base of the settings groups (each a frozen dataclass of `setting(...)` fields)."""

    TITLE: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""
    ATTRIBUTE: ClassVar[str] = ""       # its name on Config

    @classmethod
    def settings(cls) -> tuple[Setting, ...]:
        """The group's declarations, in field order, each named."""
        return tuple(dataclasses.replace(f.metadata[_KEY], name=f.name.upper(), group=cls.ATTRIBUTE)
                     for f in dataclasses.fields(cls))   # type: ignore[arg-type]

    @classmethod
    def load(cls: type[G], app_config: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> G:
        """The group from `app_config` (wins), then `environ` (default: os.environ), then the defaults."""
        app_config = app_config or {}
        environ = os.environ if environ is None else environ
        values = {}
        for declared in cls.settings():
            for source in (app_config, environ):
                if declared.variable in source:
                    values[declared.attribute] = declared.value_of(source[declared.variable])
                    break
        return cls(**values)
