"""The configuration reference (docs/configuration.md) is the operator's: every setting is in it, once, with its default."""
from __future__ import annotations

import re
from pathlib import Path

from pricefeed.config import setting_docs

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _configuration_rows() -> list[str]:
    return re.findall(r"^\| `(PRICEFEED_[A-Z0-9_]+)` \|", REFERENCE.read_text(), re.M)


def test_every_setting_has_exactly_one_row_in_the_configuration_reference():
    rows = _configuration_rows()
    names = [name for name, _, _ in setting_docs()]
    assert len(names) > 50          # the walk found the settings, not nothing
    assert sorted(set(names) - set(rows)) == [], "settings missing from docs/configuration.md"
    assert sorted(set(rows) - set(names)) == [], "docs/configuration.md rows for settings that do not exist"
    assert sorted({row for row in rows if rows.count(row) > 1}) == [], "settings listed twice"
