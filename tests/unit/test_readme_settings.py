"""The README's configuration table is the operator's reference: every setting is in it, once, with its default."""
from __future__ import annotations

import re
from pathlib import Path

from pricefeed.config import setting_docs

README = Path(__file__).resolve().parents[2] / "README.md"


def _configuration_rows() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Configuration"):]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"^\| `(PRICEFEED_[A-Z0-9_]+)` \|", section, re.M)


def test_every_setting_has_exactly_one_row_in_the_readme_configuration_table():
    rows = _configuration_rows()
    names = [name for name, _, _ in setting_docs()]
    assert len(names) > 50          # the walk found the settings, not nothing
    assert sorted(set(names) - set(rows)) == [], "settings missing from the README table"
    assert sorted(set(rows) - set(names)) == [], "README rows for settings that do not exist"
    assert sorted({row for row in rows if rows.count(row) > 1}) == [], "settings listed twice"
