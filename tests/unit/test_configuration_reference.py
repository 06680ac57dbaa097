"""docs/configuration.md is generated from the declarations; the README points newcomers at it."""
from __future__ import annotations

import re
from pathlib import Path

from pricefeed.config import SETTINGS
from pricefeed.settings.reference import COMMAND, READ_ELSEWHERE, reference

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"


def test_the_committed_reference_is_what_the_declarations_generate():
    assert REFERENCE.read_text() == reference(), f"docs/configuration.md is out of date: run `{COMMAND}`"


def test_the_reference_has_one_row_per_setting_under_its_groups_heading():
    text = REFERENCE.read_text()
    elsewhere = {name for name, _, _ in READ_ELSEWHERE}
    rows = [row for row in re.findall(r"^\| `(PRICEFEED_[A-Z0-9_]+)` \|", text, re.M) if row not in elsewhere]
    assert len(rows) == len(SETTINGS) > 50
    assert sorted(rows) == sorted(declared.variable for declared in SETTINGS)
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert len(sections) >= 8
    for declared in SETTINGS:
        holding = [section for section in sections if f"| `{declared.variable}` |" in section]
        assert len(holding) == 1 and f"`config.{declared.group}`" in holding[0], declared.variable


def test_the_readme_configuration_section_links_the_reference_and_names_only_real_settings():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Configuration"):]
    section = section[: section.index("\n## ", 1)]
    assert "docs/configuration.md" in section
    known = {d.variable for d in SETTINGS} | {name for name, _, _ in READ_ELSEWHERE}
    named = set(re.findall(r"`(PRICEFEED_[A-Z0-9_]+)`", section))
    assert named and named <= known, sorted(named - known)
